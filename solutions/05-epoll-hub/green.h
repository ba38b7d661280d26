/* Chapter 05: green socket calls. Each looks like its blocking namesake to
 * the coroutine that calls it, but where the kernel would block (EAGAIN), it
 * parks the coroutine in the hub and lets the others run. The fds must be
 * non-blocking (accept4's SOCK_NONBLOCK, socket's SOCK_NONBLOCK). */
#ifndef GREEN_H
#define GREEN_H

#include <sys/socket.h>
#include <sys/types.h>

/* accept(2): the new socket is non-blocking and close-on-exec. */
int green_accept(int fd, struct sockaddr *addr, socklen_t *len);

/* read(2) and write(2); a write may be short, as write(2)'s may. */
ssize_t green_read(int fd, void *buf, size_t len);
ssize_t green_write(int fd, const void *buf, size_t len);

/* connect(2), waiting for the handshake to finish. */
int green_connect(int fd, const struct sockaddr *addr, socklen_t len);

/* close(2), first waking any coroutine waiting on fd with EBADF. */
int green_close(int fd);

#endif
