/* Chapter 06: the patched I/O calls. Each one looks blocking to the program,
 * but where the kernel would make it wait, the green thread parks in the hub
 * (chapter 05) and the others run. Sockets and pipes the program creates are
 * made non-blocking behind its back; a per-fd record remembers whether the
 * program itself asked for O_NONBLOCK, which gets the real, non-blocking
 * behaviour (EAGAIN) and sees its own flag in fcntl(F_GETFL). */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "co.h"
#include "hub.h"
#include "patch.h"
#include "sched.h"

PATCH_REAL(socket);
PATCH_REAL(pipe2);
PATCH_REAL(accept4);
PATCH_REAL(connect);
PATCH_REAL(read);
PATCH_REAL(write);
PATCH_REAL(recv);
PATCH_REAL(send);
PATCH_REAL(poll);
PATCH_REAL(close);
PATCH_REAL(close_range);
PATCH_REAL(dup2);
PATCH_REAL(dup3);
PATCH_REAL(fclose);
PATCH_REAL(fcntl);
PATCH_REAL(nanosleep);

/* What we know of an fd. Only descriptors the program created through a
 * patched call are ours to change: O_NONBLOCK belongs to the open file
 * description, which others (a parent's pipe on fd 1) may share. */
enum fd_kind {
	FD_UNKNOWN,             /* not created by a patched call: left alone */
	FD_GREEN,               /* non-blocking behind the program's back */
	FD_NONBLOCK,            /* the program asked for O_NONBLOCK itself */
};

/* Indexed by fd, sized once from the descriptor limit so that it never
 * moves: worker threads (offload.c) read it while the hub writes it. An fd
 * closed off the hub's thread is marked stale: only the hub's thread may
 * tell the hub to forget it (hub.h's rule), and does so before its next
 * wait on that number. */
static struct {
	_Atomic unsigned char *kind;
	_Atomic unsigned char *stale;
	size_t size;
} fds;

static enum fd_kind fd_kind(int fd)
{
	if (fd < 0 || (size_t)fd >= fds.size)
		return FD_UNKNOWN;
	return atomic_load_explicit(&fds.kind[fd], memory_order_relaxed);
}

static void set_fd_kind(int fd, enum fd_kind kind)
{
	if (fd >= 0 && (size_t)fd < fds.size)
		atomic_store_explicit(&fds.kind[fd], (unsigned char)kind, memory_order_relaxed);
}

__attribute__((constructor)) static void make_fd_table(void)
{
	struct rlimit limit;
	rlim_t n = 65536;
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_max != RLIM_INFINITY &&
	    limit.rlim_max < (rlim_t)1 << 22)
		n = limit.rlim_max;
	fds.kind = calloc(n, 1);
	fds.stale = calloc(n, 1);
	fds.size = fds.kind != NULL && fds.stale != NULL ? n : 0;
}

/* fd is about to be closed, or to stop being what the hub knew of it (a
 * dup2() over it): the hub must forget it first. On another thread, leave
 * that to the hub's thread. */
static void forget(int fd)
{
	if (patch_can_park())
		hub_forget_fd(fd);
	else if (fd >= 0 && (size_t)fd < fds.size)
		atomic_store_explicit(&fds.stale[fd], 1, memory_order_release);
	set_fd_kind(fd, FD_UNKNOWN);
}

/* On the hub's thread, before it waits on fd: forget what was closed
 * elsewhere. */
static void forget_if_stale(int fd)
{
	if (fd >= 0 && (size_t)fd < fds.size &&
	    atomic_exchange_explicit(&fds.stale[fd], 0, memory_order_acquire) != 0)
		hub_forget_fd(fd);
}

/* A descriptor the program just created, through a call to which we added
 * SOCK_NONBLOCK or O_NONBLOCK: green unless the program asked for the flag
 * itself. */
static int adopt(int fd, bool nonblock)
{
	if (fd >= 0)
		set_fd_kind(fd, nonblock ? FD_NONBLOCK : FD_GREEN);
	return fd;
}

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

/* Green threads waiting for their turn to wait on an fd. The hub lets one
 * coroutine wait per fd and direction (EBUSY for a second), but kernel
 * threads may block in one call on one socket together: a pool of threads
 * in accept(), say. The second and later queue here, first come first
 * served, as Go queues goroutines on a socket's fdMutex; each waiter
 * passes the turn on when its wait ends. On the waiters' stacks, so
 * queueing allocates nothing; few at a time, so a list will do. */
struct turn {
	struct co *co;
	int fd;
	enum hub_dir dir;
	struct turn *next;
};

static struct turn *turns;

static void queue_for_turn(struct turn *t)
{
	struct turn **at = &turns;
	while (*at != NULL)
		at = &(*at)->next;
	t->next = NULL;
	*at = t;
}

static void leave_turns(struct turn *t)
{
	for (struct turn **at = &turns; *at != NULL; at = &(*at)->next) {
		if (*at == t) {
			*at = t->next;
			return;
		}
	}
}

/* A wait on fd is over: wake the first green thread queued behind it. */
static void pass_turn(int fd, enum hub_dir dir)
{
	for (struct turn *t = turns; t != NULL; t = t->next) {
		if (t->fd == fd && t->dir == dir) {
			co_wake(t->co, 0);
			return;
		}
	}
}

/* Park in the hub until fd is ready, behind the green threads already
 * waiting on it. */
static int wait_in_turn(int fd, enum hub_dir dir)
{
	forget_if_stale(fd);
	for (;;) {
		int result = hub_wait_fd(fd, dir, -1);
		if (result == 0 || errno != EBUSY) {
			int err = errno;
			pass_turn(fd, dir);
			errno = err;
			return result;
		}
		struct turn t = { .co = co_current(), .fd = fd, .dir = dir };
		queue_for_turn(&t);
		co_current()->wait = (struct co_wait){ .what = "turn", .fd = fd };
		int err = co_park();
		leave_turns(&t);
		if (err != 0) {
			errno = err;
			return -1;
		}
	}
}

/* A call on fd came back EAGAIN where the program expected it to block:
 * wait until fd is ready. Parks the green thread when it can; on any other
 * thread, blocks that kernel thread in poll(), as the real call would have.
 * 0, or -1 with errno set. */
static int wait_ready(int fd, enum hub_dir dir)
{
	if (patch_can_park())
		return wait_in_turn(fd, dir);
	struct pollfd pfd = { .fd = fd, .events = dir == HUB_READ ? POLLIN : POLLOUT };
	int ready;
	while ((ready = REAL(poll)(&pfd, 1, -1)) < 0 && errno == EINTR)
		continue;
	return ready < 0 ? -1 : 0;
}

/* The hub's hint that fd is read dry (hub.h), on the hub's thread only: it
 * is cleared when the hub's epoll_wait reports fd readable, which never
 * happens for a read off the hub, where wait_ready() polls instead. */
static bool may_read(int fd)
{
	return !patch_can_park() || hub_may_read(fd);
}

static void drained(int fd)
{
	if (patch_can_park())
		hub_drained(fd);
}

int PATCHED(socket)(int domain, int type, int protocol)
{
	return adopt(REAL(socket)(domain, type | SOCK_NONBLOCK, protocol), type & SOCK_NONBLOCK);
}

static int open_pipe(int pipefd[2], int flags)
{
	if (REAL(pipe2)(pipefd, flags | O_NONBLOCK) < 0)
		return -1;
	adopt(pipefd[0], flags & O_NONBLOCK);
	adopt(pipefd[1], flags & O_NONBLOCK);
	return 0;
}

int PATCHED(pipe2)(int pipefd[2], int flags)
{
	return open_pipe(pipefd, flags);
}

int PATCHED(pipe)(int pipefd[2])
{
	return open_pipe(pipefd, 0);
}

static int accept_client(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	if (fd_kind(fd) != FD_GREEN)
		return adopt(REAL(accept4)(fd, addr, len, flags | SOCK_NONBLOCK), flags & SOCK_NONBLOCK);
	for (;;) {
		int client = REAL(accept4)(fd, addr, len, flags | SOCK_NONBLOCK);
		if (client >= 0)
			return adopt(client, flags & SOCK_NONBLOCK);
		if (!would_block(errno) || wait_ready(fd, HUB_READ) < 0)
			return -1;
	}
}

int PATCHED(accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return accept_client(fd, addr, len, flags);
}

int PATCHED(accept)(int fd, struct sockaddr *addr, socklen_t *len)
{
	return accept_client(fd, addr, len, 0);
}

ssize_t PATCHED(read)(int fd, void *buf, size_t len)
{
	/* EXERCISE patch_read: read(2) for a program that thinks it blocks.
	 * An fd that is not FD_GREEN gets the real read, whatever it does.
	 * For a green one, loop: unless the hub knows the socket is read dry
	 * (may_read(fd) false), call REAL(read); bytes or end of file
	 * (>= 0): tell the hub if fewer than len came (drained(fd), the
	 * socket is most likely empty now) and return them. EAGAIN
	 * (would_block()): drained(fd), then wait_ready(fd, HUB_READ) and go
	 * round again. Any other error, EINTR included (the program handles
	 * that as it would from the kernel), or a failed wait: return -1.
	 * Hint: calling read() here instead of REAL(read) calls this function
	 * again, for ever: the dynamic linker binds read to the first
	 * definition it finds, and that is this one.
	 * Tests: patched_read_waits_for_a_green_writer, serves_ten_thousand_clients_on_one_thread,
	 * preloaded_server_survives_short_reads_and_writes,
	 * patched_serial_server_still_serves_one_client_at_a_time,
	 * program_asking_for_nonblock_gets_eagain, clearing_nonblock_makes_reads_park_again,
	 * and the shared echo suites.
	 */
	if (fd_kind(fd) != FD_GREEN)
		return REAL(read)(fd, buf, len);
	for (;;) {
		if (may_read(fd)) {
			ssize_t got = REAL(read)(fd, buf, len);
			if (got >= 0) {
				if ((size_t)got < len)
					drained(fd);
				return got;
			}
			if (!would_block(errno))
				return -1;
			drained(fd);
		}
		if (wait_ready(fd, HUB_READ) < 0)
			return -1;
	}
	/* STUB: (void)wait_ready; (void)may_read; (void)drained; */
	/* STUB: return REAL(read)(fd, buf, len); */
	/* END patch_read */
}

/* write(2) or send(2) on a green fd. The program thinks the fd blocks,
 * and a blocking write returns only once every byte is written (a socket or
 * a pipe takes what fits and blocks for the rest), or once something went
 * wrong: an error with nothing written, or a count short of len. */
static ssize_t write_whole(int fd, const char *buf, size_t len, int flags, bool as_send)
{
	size_t done = 0;
	for (;;) {
		ssize_t put = as_send ? REAL(send)(fd, buf + done, len - done, flags)
				      : REAL(write)(fd, buf + done, len - done);
		if (put >= 0)
			done += (size_t)put;
		else if (!would_block(errno))
			return done > 0 ? (ssize_t)done : -1;
		if (done == len)
			return (ssize_t)done;
		if (wait_ready(fd, HUB_WRITE) < 0)
			return done > 0 ? (ssize_t)done : -1;
	}
}

ssize_t PATCHED(write)(int fd, const void *buf, size_t len)
{
	if (fd_kind(fd) != FD_GREEN)
		return REAL(write)(fd, buf, len);
	return write_whole(fd, buf, len, 0, false);
}

ssize_t PATCHED(recv)(int fd, void *buf, size_t len, int flags)
{
	if (fd_kind(fd) != FD_GREEN || (flags & MSG_DONTWAIT))
		return REAL(recv)(fd, buf, len, flags);
	for (;;) {
		ssize_t got = REAL(recv)(fd, buf, len, flags);
		if (got >= 0 || !would_block(errno))
			return got;
		if (wait_ready(fd, HUB_READ) < 0)
			return -1;
	}
}

ssize_t PATCHED(send)(int fd, const void *buf, size_t len, int flags)
{
	if (fd_kind(fd) != FD_GREEN || (flags & MSG_DONTWAIT))
		return REAL(send)(fd, buf, len, flags);
	return write_whole(fd, buf, len, flags, true);
}

int PATCHED(connect)(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (REAL(connect)(fd, addr, len) == 0)
		return 0;
	if (fd_kind(fd) != FD_GREEN || errno != EINPROGRESS)
		return -1;
	/* connect(2): the socket turns writable when the handshake is over, and
	 * SO_ERROR tells how it went. */
	if (wait_ready(fd, HUB_WRITE) < 0)
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

/* glibc 2.36 declares poll's array write-only (a mistake: poll reads the
 * events asked for), so gcc warns that our poll reads it uninitialized. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/* poll(2) on one fd, waiting in one direction: what a blocking program uses
 * for a timeout on a single socket. Anything else goes to the real poll. */
int PATCHED(poll)(struct pollfd *pfds, nfds_t n, int timeout)
{
	short events = n == 1 ? pfds[0].events & (POLLIN | POLLOUT) : 0;
	if (!patch_can_park() || timeout == 0 || (events != POLLIN && events != POLLOUT))
		return REAL(poll)(pfds, n, timeout);
	int64_t deadline = timeout < 0 ? -1 : co_deadline_after(timeout);
	for (;;) {
		int ready = REAL(poll)(pfds, 1, 0);
		if (ready != 0)
			return ready;
		forget_if_stale(pfds[0].fd);
		if (hub_wait_fd(pfds[0].fd, events == POLLIN ? HUB_READ : HUB_WRITE, deadline) == 0)
			continue;
		if (errno == ETIMEDOUT)
			return 0;
		/* epoll cannot watch this fd (a regular file, EPERM): be real. */
		if (errno == EPERM)
			return REAL(poll)(pfds, n, deadline < 0 ? -1 : (int)(deadline - co_now_ms()));
		return -1;
	}
}

/* Every way a program closes an fd goes through forget() first (hub.h's
 * rule): a green thread parked on it wakes with EBADF, and the hub forgets
 * it, for the number may come back as another file. What stays out of
 * reach: a raw syscall(SYS_close), and libc closing an fd by itself. */
int PATCHED(close)(int fd)
{
	forget(fd);
	return REAL(close)(fd);
}

int PATCHED(fclose)(FILE *stream)
{
	forget(fileno(stream));
	return REAL(fclose)(stream);
}

int PATCHED(close_range)(unsigned first, unsigned last, int flags)
{
	/* CLOSE_RANGE_CLOEXEC only marks them: nothing is closed yet. */
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		for (size_t fd = first; fd <= last && fd < fds.size; fd++)
			forget((int)fd);
	return REAL(close_range)(first, last, flags);
}

/* dup2() and dup3() close newfd first if it is open; then newfd is oldfd's
 * file, green (or not) as oldfd is. */
static int duplicated(int oldfd, int newfd)
{
	if (newfd >= 0)
		set_fd_kind(newfd, fd_kind(oldfd));
	return newfd;
}

int PATCHED(dup2)(int oldfd, int newfd)
{
	if (oldfd == newfd)
		return REAL(dup2)(oldfd, newfd);
	forget(newfd);
	return duplicated(oldfd, REAL(dup2)(oldfd, newfd));
}

int PATCHED(dup3)(int oldfd, int newfd, int flags)
{
	if (oldfd != newfd)
		forget(newfd);
	return duplicated(oldfd, REAL(dup3)(oldfd, newfd, flags));
}

/* fcntl(2) is variadic; the third argument, when there is one, is an int or
 * a pointer, and passing it on as a pointer carries either (as glibc does). */
int PATCHED(fcntl)(int fd, int cmd, ...)
{
	va_list args;
	va_start(args, cmd);
	void *arg = va_arg(args, void *);
	va_end(args);
	enum fd_kind kind = fd_kind(fd);
	if (kind == FD_UNKNOWN || (cmd != F_GETFL && cmd != F_SETFL))
		return REAL(fcntl)(fd, cmd, arg);
	/* EXERCISE fcntl_flags: keep the program's view of O_NONBLOCK.
	 * F_GETFL: take the real flags; for an FD_GREEN fd, hide the
	 * O_NONBLOCK that we set (flags & ~O_NONBLOCK). F_SETFL: the int
	 * argument is (int)(intptr_t)arg; remember what the program wants
	 * (set_fd_kind: FD_NONBLOCK if it sets O_NONBLOCK, else FD_GREEN) and
	 * pass the flags on with O_NONBLOCK always set, because the fd must
	 * stay non-blocking for the hub.
	 * Hint: a program that asked for O_NONBLOCK must get EAGAIN from
	 * read(): the FD_NONBLOCK kind gives it the real read.
	 * Tests: getfl_still_shows_a_blocking_socket,
	 * setfl_with_the_flags_getfl_gave_keeps_the_fd_nonblocking,
	 * program_asking_for_nonblock_gets_eagain, clearing_nonblock_makes_reads_park_again.
	 */
	if (cmd == F_GETFL) {
		int flags = REAL(fcntl)(fd, F_GETFL);
		return flags >= 0 && kind == FD_GREEN ? flags & ~O_NONBLOCK : flags;
	}
	int flags = (int)(intptr_t)arg;
	if (REAL(fcntl)(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -1;
	set_fd_kind(fd, flags & O_NONBLOCK ? FD_NONBLOCK : FD_GREEN);
	return 0;
	/* STUB: return REAL(fcntl)(fd, cmd, arg); */
	/* END fcntl_flags */
}

/* ---- Sleeping ------------------------------------------------------------ */

/* nanosleep(2) for a green thread: park for the time in req, rounded up to
 * whole milliseconds (the hub's timers count milliseconds). */
static int sleep_for(const struct timespec *req, struct timespec *rem)
{
	if (!patch_can_park())
		return REAL(nanosleep)(req, rem);
	if (req->tv_nsec < 0 || req->tv_nsec > 999999999 || req->tv_sec < 0) {
		errno = EINVAL;
		return -1;
	}
	long long ms = (long long)req->tv_sec * 1000 + (req->tv_nsec + 999999) / 1000000;
	if (co_sleep(ms > 0 ? (long)ms : 0) < 0)
		return -1;
	if (rem != NULL)
		*rem = (struct timespec){ 0 };
	return 0;
}

int PATCHED(nanosleep)(const struct timespec *req, struct timespec *rem)
{
	return sleep_for(req, rem);
}

/* libc's usleep and sleep call its nanosleep directly, not through the
 * symbol we replace: they need patching of their own. */
int PATCHED(usleep)(useconds_t usec)
{
	struct timespec ts = { .tv_sec = usec / 1000000, .tv_nsec = (long)(usec % 1000000) * 1000 };
	return sleep_for(&ts, NULL);
}

unsigned PATCHED(sleep)(unsigned seconds)
{
	struct timespec ts = { .tv_sec = seconds };
	return sleep_for(&ts, NULL) == 0 ? 0 : seconds;
}
