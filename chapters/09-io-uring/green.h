/* Chapter 05: green socket calls. Each looks like its blocking namesake to
 * the coroutine that calls it, but where the kernel would block (EAGAIN), it
 * parks the coroutine in the hub and lets the others run. The fds must be
 * non-blocking (accept4's SOCK_NONBLOCK, socket's SOCK_NONBLOCK).
 *
 * Chapter 07: every call has a deadline, libdill's way: the _until variant
 * takes an absolute time on the co_now_ms() clock (-1: none) and fails with
 * ETIMEDOUT once it passes. An absolute time, not a duration, so that one
 * deadline can cover a whole exchange of several calls. Every call fails
 * with ECANCELED once the calling coroutine is cancelled (co_cancel), even
 * one that would not have to wait. */
#ifndef GREEN_H
#define GREEN_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* accept(2): the new socket is non-blocking and close-on-exec. */
int green_accept(int fd, struct sockaddr *addr, socklen_t *len);
int green_accept_until(int fd, struct sockaddr *addr, socklen_t *len, int64_t deadline);

/* read(2) and write(2); a write may be short, as write(2)'s may. */
ssize_t green_read(int fd, void *buf, size_t len);
ssize_t green_read_until(int fd, void *buf, size_t len, int64_t deadline);
ssize_t green_write(int fd, const void *buf, size_t len);
ssize_t green_write_until(int fd, const void *buf, size_t len, int64_t deadline);

/* connect(2), waiting for the handshake to finish. */
int green_connect(int fd, const struct sockaddr *addr, socklen_t len);
int green_connect_until(int fd, const struct sockaddr *addr, socklen_t len, int64_t deadline);

/* close(2), first waking any coroutine waiting on fd with EBADF. */
int green_close(int fd);

#endif
