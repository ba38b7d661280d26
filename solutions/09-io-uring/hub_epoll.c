/* Chapter 05: the hub on epoll, readiness; chapter 09 puts it behind
 * backend.h, beside the io_uring hub. The kernel says when a socket is ready,
 * and the woken coroutine makes the call itself (green.c).
 *
 * Registration: level-triggered, for the directions somebody waits on. An
 * fd joins the epoll set the first time a coroutine waits on it and stays
 * there, so the common loop (read, write, wait to read again) costs no
 * epoll_ctl at all: only read, write and a share of one epoll_wait, the
 * same system calls as a hand-written callback server. Level-triggered
 * means a readiness that came before the wait is still reported, so a
 * coroutine may wait without first reading EAGAIN (green_read relies on
 * it). The price: an fd that stays ready with nobody waiting would be
 * reported by every epoll_wait, so when that happens the hub narrows the
 * registration to the directions still waited on (one epoll_ctl), and
 * widens it again at the next wait. Edge-triggered registration needs no
 * narrowing, but only a read that returned EAGAIN proves that the next
 * edge will come: one more read per round trip. EPOLLONESHOT would need an
 * epoll_ctl to re-arm before every wait. */
#include "backend.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cli.h"
#include "sched.h"

enum { MAX_EVENTS = 256 };

/* What each direction asks epoll for. A half-close is worth waking a
 * reader for; errors and hang-ups (EPOLLERR, EPOLLHUP) are always
 * reported. */
static const uint32_t interest[2] = {
	[HUB_READ] = EPOLLIN | EPOLLRDHUP,
	[HUB_WRITE] = EPOLLOUT,
};

/* Per fd: the coroutine waiting to read and the one waiting to write, the
 * events it is registered for (0: not in the epoll set), and whether a read
 * came back short or empty since epoll last said it was readable. */
struct epoll_fd {
	struct co *waiter[2];
	uint32_t armed;
	bool drained;
};

static struct {
	int epfd;               /* -1 while closed */
	struct epoll_fd *fds;   /* indexed by fd */
	size_t nfds;
	size_t fd_waits;        /* coroutines waiting on an fd */
	struct epoll_event events[MAX_EVENTS];
} ep = { .epfd = -1 };

int hub_epoll_open(void)
{
	ep.epfd = epoll_create1(EPOLL_CLOEXEC);
	return ep.epfd < 0 ? -1 : 0;
}

/* The table entry for fd, growing the table if needed; NULL if out of
 * memory. */
static struct epoll_fd *slot(int fd)
{
	if ((size_t)fd >= ep.nfds) {
		size_t n = ep.nfds ? ep.nfds : 64;
		while (n <= (size_t)fd)
			n *= 2;
		struct epoll_fd *fds = realloc(ep.fds, n * sizeof *fds);
		if (fds == NULL)
			return NULL;
		for (size_t i = ep.nfds; i < n; i++)
			fds[i] = (struct epoll_fd){ 0 };
		ep.fds = fds;
		ep.nfds = n;
	}
	return &ep.fds[fd];
}

/* Register fd for exactly the events in want: add it, modify it, or take
 * it out of the epoll set when want is 0. The record is trusted: if it says
 * fd is registered for want already, no system call is made (hence the rule
 * in hub.h: fds are forgotten before they are closed). */
static int arm(int fd, uint32_t want)
{
	struct epoll_fd *f = &ep.fds[fd];
	if (f->armed == want)
		return 0;
	struct epoll_event ev = { .events = want, .data.fd = fd };
	int op = want == 0 ? EPOLL_CTL_DEL : f->armed == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	int result = epoll_ctl(ep.epfd, op, fd, &ev);
	/* Should an fd have been closed against the rule anyway, a change of
	 * its registration still finds the truth: re-add it. */
	if (result < 0 && op == EPOLL_CTL_MOD && errno == ENOENT)
		result = epoll_ctl(ep.epfd, EPOLL_CTL_ADD, fd, &ev);
	if (result < 0 && op == EPOLL_CTL_DEL && (errno == ENOENT || errno == EBADF))
		result = 0;
	if (result < 0)
		return -1;
	f->armed = want;
	return 0;
}

/* The events the current waiters of f need. */
static uint32_t wanted(const struct epoll_fd *f)
{
	return (f->waiter[HUB_READ] ? interest[HUB_READ] : 0) |
	       (f->waiter[HUB_WRITE] ? interest[HUB_WRITE] : 0);
}

int hub_epoll_wait_fd(int fd, enum hub_dir dir, int64_t deadline)
{
	struct co *co = co_current();
	struct epoll_fd *f = slot(fd);
	if (f == NULL)
		return -1;
	if (f->waiter[dir] != NULL) {
		errno = EBUSY;
		return -1;
	}
	if (arm(fd, f->armed | interest[dir]) < 0)
		return -1;
	f->waiter[dir] = co;
	ep.fd_waits++;
	co->wait = (struct co_wait){ .what = dir == HUB_READ ? "read" : "write", .fd = fd };
	int result = hub_park_until(deadline);
	/* Another coroutine may have grown (moved) the table meanwhile. */
	f = &ep.fds[fd];
	if (f->waiter[dir] == co)
		f->waiter[dir] = NULL;
	ep.fd_waits--;
	if (result != 0) {
		errno = result;
		return -1;
	}
	return 0;
}

bool hub_may_read(int fd)
{
	return fd < 0 || (size_t)fd >= ep.nfds || !ep.fds[fd].drained;
}

void hub_drained(int fd)
{
	struct epoll_fd *f = fd >= 0 ? slot(fd) : NULL;
	if (f != NULL)
		f->drained = true;
}

void hub_epoll_forget_fd(int fd)
{
	if ((size_t)fd >= ep.nfds)
		return;
	struct epoll_fd *f = &ep.fds[fd];
	for (int dir = HUB_READ; dir <= HUB_WRITE; dir++) {
		if (f->waiter[dir] != NULL)
			co_wake(f->waiter[dir], EBADF);
	}
	/* close() would take the fd out of the epoll set, but only if no other
	 * fd refers to the same socket (a dup, or the fd handed to another
	 * thread without a close): then the registration would stay, and being
	 * level-triggered, report the socket at every epoll_wait. One
	 * epoll_ctl per fd forgotten, not per wait. */
	if (f->armed != 0 && arm(fd, 0) < 0)
		cli_warn("epoll_ctl: stop watching fd %d", fd);
	*f = (struct epoll_fd){ 0 };
}

size_t hub_epoll_waiting(void)
{
	return ep.fd_waits;
}

/* Wake the coroutines waiting on the fd an event is about. Errors and
 * hang-ups wake both: their next read or write returns the error. */
static void dispatch(const struct epoll_event *ev)
{
	int fd = ev->data.fd;
	if ((size_t)fd >= ep.nfds || ep.fds[fd].armed == 0) {
		/* An fd the hub has no registration on record for: left behind
		 * somehow. Take it out, or it would come back at every wait. */
		struct epoll_event unused;
		if (epoll_ctl(ep.epfd, EPOLL_CTL_DEL, fd, &unused) < 0 && errno != ENOENT &&
		    errno != EBADF)
			cli_warn("epoll_ctl: stop watching fd %d", fd);
		return;
	}
	struct epoll_fd *f = &ep.fds[fd];
	uint32_t broken = EPOLLERR | EPOLLHUP;
	bool unheard = false;	/* an event that nobody waits for */
	if (ev->events & (interest[HUB_READ] | broken)) {
		f->drained = false;
		if (f->waiter[HUB_READ] != NULL)
			co_wake(f->waiter[HUB_READ], 0);
		else
			unheard = true;
	}
	if (ev->events & (interest[HUB_WRITE] | broken)) {
		if (f->waiter[HUB_WRITE] != NULL)
			co_wake(f->waiter[HUB_WRITE], 0);
		else
			unheard = true;
	}
	/* Level-triggered: unless the registration is narrowed to what is
	 * waited for, the same event comes back at every epoll_wait, and an
	 * idle hub would spin. */
	if (unheard && arm(fd, wanted(f)) < 0)
		cli_warn("epoll_ctl: stop watching fd %d", fd);
}

void hub_epoll_poll(int64_t timeout_ns)
{
	/* epoll_wait counts whole milliseconds: round up, so that a timer is
	 * never found not yet due when the wait ends. */
	int timeout_ms = -1;
	if (timeout_ns >= 0) {
		int64_t ms = (timeout_ns + 999999) / 1000000;
		timeout_ms = ms > INT_MAX ? INT_MAX : (int)ms;
	}
	int n = epoll_wait(ep.epfd, ep.events, MAX_EVENTS, timeout_ms);
	if (n < 0 && errno != EINTR)
		cli_die("epoll_wait");
	for (int i = 0; i < n; i++)
		dispatch(&ep.events[i]);
}

void hub_epoll_close(void)
{
	if (ep.epfd >= 0 && close(ep.epfd) < 0)
		cli_warn("close the epoll instance");
	free(ep.fds);
	ep.epfd = -1;
	ep.fds = NULL;
	ep.nfds = 0;
	ep.fd_waits = 0;
}
