/* Chapter 05: green socket calls; see green.h. Each is the same loop: try
 * the real call; if it would block, wait in the hub for the fd to be ready,
 * and try again. The waiting coroutine costs nothing while it waits.
 * Chapter 07: each call takes a deadline, which the hub's wait enforces.
 * Chapter 09: on io_uring, no loop: the call itself goes to the hub, which
 * hands it to the kernel and wakes the coroutine with its result (an accept
 * takes the clients already queued first, as on epoll). */
#define _GNU_SOURCE	/* accept4() */

#include "green.h"

#include <errno.h>
#include <stdbool.h>
#include <unistd.h>

#include "hub.h"
#include "sched.h"

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

/* A cancelled coroutine fails every green call, not just those that wait: a
 * client that keeps its socket busy would otherwise never make its server
 * coroutine wait, and the cancel would never be seen. (Chapter 07.) */
static bool cancelled(void)
{
	struct co *co = co_current();
	if (co == NULL || !co->cancelled)
		return false;
	errno = ECANCELED;
	return true;
}

int green_accept_until(int fd, struct sockaddr *addr, socklen_t *len, int64_t deadline)
{
	if (cancelled())
		return -1;
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
		if (!would_block(errno))
			return -1;
		/* Chapter 09: the clients already queued are taken above on
		 * io_uring too. Clients connect in bursts, and the hub wakes
		 * an accept's coroutine once per loop: ten thousand clients
		 * taken one per loop overflowed the listening queue, and the
		 * kernel dropped their SYNs (a client retries a second
		 * later). Only an empty queue sends an accept to the ring. */
		if (hub_completes())
			return hub_uring_accept(fd, addr, len, deadline);
		if (hub_wait_fd(fd, HUB_READ, deadline) < 0)
			return -1;
	}
}

ssize_t green_read_until(int fd, void *buf, size_t len, int64_t deadline)
{
	if (cancelled())
		return -1;
	if (hub_completes())
		return hub_uring_read(fd, buf, len, deadline);
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
		if (hub_wait_fd(fd, HUB_READ, deadline) < 0)
			return -1;
	}
}

ssize_t green_write_until(int fd, const void *buf, size_t len, int64_t deadline)
{
	if (cancelled())
		return -1;
	if (hub_completes())
		return hub_uring_write(fd, buf, len, deadline);
	for (;;) {
		ssize_t put = write(fd, buf, len);
		if (put >= 0)
			return put;
		if (errno == EINTR)
			continue;
		if (!would_block(errno) || hub_wait_fd(fd, HUB_WRITE, deadline) < 0)
			return -1;
	}
}

int green_connect_until(int fd, const struct sockaddr *addr, socklen_t len, int64_t deadline)
{
	if (cancelled())
		return -1;
	if (hub_completes())
		return hub_uring_connect(fd, addr, len, deadline);
	if (connect(fd, addr, len) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR)
		return -1;
	/* connect(2): the socket becomes writable when the handshake ends;
	 * SO_ERROR then says how it went. */
	if (hub_wait_fd(fd, HUB_WRITE, deadline) < 0)
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

/* Without a deadline: wait as long as it takes. */
int green_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return green_accept_until(fd, addr, len, -1);
}

ssize_t green_read(int fd, void *buf, size_t len)
{
	return green_read_until(fd, buf, len, -1);
}

ssize_t green_write(int fd, const void *buf, size_t len)
{
	return green_write_until(fd, buf, len, -1);
}

int green_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	return green_connect_until(fd, addr, len, -1);
}

int green_close(int fd)
{
	hub_forget_fd(fd);
	return close(fd);
}
