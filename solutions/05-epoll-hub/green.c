/* Chapter 05: green socket calls; see green.h. Each is the same loop: try
 * the real call; if it would block, wait in the hub for the fd to be ready,
 * and try again. The waiting coroutine costs nothing while it waits. */
#define _GNU_SOURCE	/* accept4() */

#include "green.h"

#include <errno.h>
#include <stdbool.h>
#include <unistd.h>

#include "hub.h"

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

int green_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	for (;;) {
		socklen_t size = len != NULL ? *len : 0;
		int client = accept4(fd, addr, len != NULL ? &size : NULL,
				     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (client >= 0) {
			if (len != NULL)
				*len = size;
			return client;
		}
		if (errno == EINTR)
			continue;
		if (!would_block(errno) || hub_wait_fd(fd, HUB_READ, -1) < 0)
			return -1;
	}
}

ssize_t green_read(int fd, void *buf, size_t len)
{
	/* EXERCISE green_read: read like read(2), parking instead of blocking.
	 * Loop: unless the hub says the socket was read dry
	 * (hub_may_read(fd) false), call read(). Bytes or end of file (>= 0):
	 * if fewer than len came, the socket is most likely empty now, so tell
	 * the hub (hub_drained(fd)); return them. EINTR: try again. EAGAIN
	 * (would_block()): hub_drained(fd). Any other error: return -1. Then,
	 * when there was nothing to read, park until fd is readable with
	 * hub_wait_fd(fd, HUB_READ, -1) and go round again; if that wait
	 * fails (ECANCELED, EBADF...), return -1 with its errno.
	 * Hint: the hint only saves system calls (without it, a read() that
	 * fails with EAGAIN per echo), but two tests check that you give it:
	 * hub_may_read(fd) must be false after a short read, and while parked.
	 * Tests: reader_parks_until_data_arrives, peer_leaving_wakes_the_reader,
	 * a_short_read_tells_the_hub_the_socket_is_drained,
	 * a_read_that_would_block_tells_the_hub_before_parking,
	 * a_read_whose_fd_is_closed_fails_even_if_the_number_is_reused, and the
	 * echo suites (short reads and EINTR too).
	 */
	for (;;) {
		if (hub_may_read(fd)) {
			ssize_t got = read(fd, buf, len);
			if (got >= 0) {
				if ((size_t)got < len)
					hub_drained(fd);
				return got;
			}
			if (errno == EINTR)
				continue;
			if (!would_block(errno))
				return -1;
			hub_drained(fd);
		}
		if (hub_wait_fd(fd, HUB_READ, -1) < 0)
			return -1;
	}
	/* STUB: return read(fd, buf, len); */
	/* END green_read */
}

ssize_t green_write(int fd, const void *buf, size_t len)
{
	for (;;) {
		ssize_t put = write(fd, buf, len);
		if (put >= 0)
			return put;
		if (errno == EINTR)
			continue;
		if (!would_block(errno) || hub_wait_fd(fd, HUB_WRITE, -1) < 0)
			return -1;
	}
}

int green_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (connect(fd, addr, len) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR)
		return -1;
	/* connect(2): the socket becomes writable when the handshake ends;
	 * SO_ERROR then says how it went. */
	if (hub_wait_fd(fd, HUB_WRITE, -1) < 0)
		return -1;
	int err;
	socklen_t size = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &size) < 0)
		return -1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

int green_close(int fd)
{
	hub_forget_fd(fd);
	return close(fd);
}
