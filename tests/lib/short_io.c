/* A shim the tests preload into a server (LD_PRELOAD): every read(), write(),
 * recv() and send() on a socket moves at most a few bytes, and every fifth
 * such call, and every third accept(), fails with EINTR first. The kernel
 * may do both to any program, just rarely; a server that assumes one call
 * moves a whole buffer loses bytes under this shim. */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

enum { MAX_BYTES = 7, EINTR_EVERY = 5, ACCEPT_EINTR_EVERY = 3 };

static atomic_uint calls;

/* libc's definitions, found once at load time, before the program runs. */
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);

/* The next definition of name after this library: libc's, normally. */
static void *next_definition(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);
	if (fn == NULL) {
		fprintf(stderr, "short_io: dlsym %s: %s\n", name, dlerror());
		abort();
	}
	return fn;
}

static bool is_socket(int fd)
{
	int type;
	socklen_t len = sizeof type;
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

/* Decide the fate of one I/O call on fd: false means fail it with EINTR;
 * otherwise *count is cut to between 1 and MAX_BYTES bytes. */
static bool go_ahead(int fd, size_t *count)
{
	if (!is_socket(fd))
		return true;
	unsigned n = atomic_fetch_add(&calls, 1);
	if (n % EINTR_EVERY == EINTR_EVERY - 1) {
		errno = EINTR;
		return false;
	}
	size_t cap = 1 + n % MAX_BYTES;
	if (*count > cap)
		*count = cap;
	return true;
}

__attribute__((constructor)) static void load(void)
{
	real_read = next_definition("read");
	real_write = next_definition("write");
	real_recv = next_definition("recv");
	real_send = next_definition("send");
	real_accept = next_definition("accept");
	real_accept4 = next_definition("accept4");
	/* The harness looks for this line, so a shim that failed to load cannot
	 * make a test pass by doing nothing. */
	fprintf(stderr, "short_io: loaded into %s: socket reads and writes move at most %d bytes\n",
		program_invocation_short_name, MAX_BYTES);
}

ssize_t read(int fd, void *buf, size_t count)
{
	return go_ahead(fd, &count) ? real_read(fd, buf, count) : -1;
}

ssize_t write(int fd, const void *buf, size_t count)
{
	return go_ahead(fd, &count) ? real_write(fd, buf, count) : -1;
}

ssize_t recv(int fd, void *buf, size_t count, int flags)
{
	return go_ahead(fd, &count) ? real_recv(fd, buf, count, flags) : -1;
}

ssize_t send(int fd, const void *buf, size_t count, int flags)
{
	return go_ahead(fd, &count) ? real_send(fd, buf, count, flags) : -1;
}

/* With _FORTIFY_SOURCE (the default on Ubuntu), read() and recv() into a
 * buffer of known size may compile to these checked variants instead. */
ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
	if (count > buflen)
		abort();
	return read(fd, buf, count);
}

ssize_t __recv_chk(int fd, void *buf, size_t count, size_t buflen, int flags)
{
	if (count > buflen)
		abort();
	return recv(fd, buf, count, flags);
}

static bool accept_go_ahead(void)
{
	static atomic_uint accepts;
	if (atomic_fetch_add(&accepts, 1) % ACCEPT_EINTR_EVERY == 0) {
		errno = EINTR;
		return false;
	}
	return true;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accept_go_ahead() ? real_accept(fd, addr, len) : -1;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return accept_go_ahead() ? real_accept4(fd, addr, len, flags) : -1;
}
