/* Chapter 05: the hub; see hub.h. Chapter 09: the part of it that does not
 * depend on the kernel's interface: the choice of backend, the timers (a
 * min-heap, as in chapter 05), and parking with a deadline. The backends
 * (backend.h) do the rest: hub_epoll.c waits for readiness, hub_uring.c for
 * completions. */
#include "hub.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cli.h"
#include "sched.h"

static struct {
	enum hub_kind kind;     /* HUB_AUTO while no hub is open */
	struct timer_heap timers;
	size_t timed_waits;     /* coroutines parked with a deadline */
	uint64_t loops;
} hub;

static struct co *timer_owner(struct timer *t)
{
	return (struct co *)(void *)((char *)t - offsetof(struct co, timer));
}

int hub_open(enum hub_kind kind)
{
	if (hub.kind != HUB_AUTO)
		return 0;
	if (kind != HUB_EPOLL) {
		if (hub_uring_open() == 0) {
			hub.kind = HUB_URING;
			return 0;
		}
		if (kind == HUB_URING)
			return -1;
		/* Old kernels, kernel.io_uring_disabled, the seccomp profiles
		 * of container runtimes and qemu-user all end here. Said once:
		 * a program may open and close the hub many times (tests). */
		static bool said;
		if (!said)
			cli_log("io_uring is not available here (io_uring_setup: %s): the hub runs "
				"on epoll", strerror(errno));
		said = true;
	}
	if (hub_epoll_open() < 0)
		return -1;
	hub.kind = HUB_EPOLL;
	return 0;
}

const char *hub_name(void)
{
	switch (hub.kind) {
	case HUB_URING: return "io_uring";
	case HUB_EPOLL: return "epoll";
	case HUB_AUTO: break;
	}
	return NULL;
}

bool hub_completes(void)
{
	return hub.kind == HUB_URING;
}

/* Park with an optional deadline; the caller has filled in co->wait.
 *
 * Chapter 09: lazy timers. A client's every read and write waits with the
 * idle deadline, a minute away, and on io_uring every call parks: taking
 * the timer out of the heap after each wait and putting it back for the
 * next cost two walks down a heap of ten thousand coroutines per round
 * trip, 4% of the server's CPU in perf. So a timer stays in the heap after
 * its wait. The next wait keeps it if it is armed no later than its own
 * deadline (co->deadline holds the real one); when it fires,
 * expire_timers() looks at co->deadline: due, a wake-up; later, armed
 * again for then; no timed wait any more, dropped. One walk per minute
 * instead of two per round trip. */
static int park_until(struct co *co, int64_t deadline)
{
	struct timer *t = &co->timer;
	if (deadline >= 0) {
		if (t->index != TIMER_IDLE && t->deadline > deadline)
			timers_remove(&hub.timers, t);	/* armed too late for this wait */
		if (t->index == TIMER_IDLE) {
			t->deadline = deadline;
			if (!timers_add(&hub.timers, t))
				return ENOMEM;
		}
		hub.timed_waits++;
	}
	co->deadline = deadline;
	int result = co_park();
	co->deadline = -1;
	if (deadline >= 0)
		hub.timed_waits--;
	return result;
}

void hub_forget_co(struct co *co)
{
	timers_remove(&hub.timers, &co->timer);
}

int hub_wait_fd(int fd, enum hub_dir dir, int64_t deadline)
{
	if (fd < 0 || co_current() == NULL) {
		errno = fd < 0 ? EBADF : EPERM;
		return -1;
	}
	if (hub.kind == HUB_URING)
		return hub_uring_wait_fd(fd, dir, deadline);
	return hub_epoll_wait_fd(fd, dir, deadline);
}

int hub_park_until(int64_t deadline)
{
	return park_until(co_current(), deadline);
}

int hub_sleep_until(int64_t deadline)
{
	struct co *co = co_current();
	co->wait = (struct co_wait){ .what = "sleep", .fd = -1 };
	int result = park_until(co, deadline);
	if (result != 0 && result != ETIMEDOUT) {
		errno = result;
		return -1;
	}
	return 0;
}

void hub_forget_fd(int fd)
{
	if (fd < 0)
		return;
	if (hub.kind == HUB_URING)
		hub_uring_forget_fd(fd);
	else if (hub.kind == HUB_EPOLL)
		hub_epoll_forget_fd(fd);
}

static void expire_timers(void)
{
	int64_t now = co_now_ms();
	struct timer *t;
	while ((t = timers_first(&hub.timers)) != NULL && t->deadline <= now) {
		timers_remove(&hub.timers, t);
		struct co *co = timer_owner(t);
		if (co->deadline < 0)
			continue;	/* left over from a wait that is over */
		if (co->deadline <= now) {
			co_wake(co, ETIMEDOUT);
			continue;
		}
		/* Armed for an earlier wait: again, for this one's deadline.
		 * The heap has just had room for it. */
		t->deadline = co->deadline;
		timers_add(&hub.timers, t);
	}
}

/* How long the backend may wait, in nanoseconds: until the nearest timer
 * is due, or for ever (-1); not at all (0) when block is false. */
static int64_t poll_timeout_ns(bool block)
{
	if (!block)
		return 0;
	struct timer *first = timers_first(&hub.timers);
	if (first == NULL)
		return -1;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t left = first->deadline * 1000000 - ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	return left > 0 ? left : 0;
}

static size_t waiting(void)
{
	return hub.kind == HUB_URING ? hub_uring_waiting() : hub_epoll_waiting();
}

bool hub_poll(bool block)
{
	if (waiting() == 0 && hub.timed_waits == 0)
		return false;
	hub.loops++;
	int64_t timeout_ns = poll_timeout_ns(block);
	if (hub.kind == HUB_URING)
		hub_uring_poll(timeout_ns);
	else
		hub_epoll_poll(timeout_ns);
	/* After the kernel's news, whether or not any came: a timeout is how
	 * the timers get their turn. */
	expire_timers();
	return true;
}

uint64_t hub_loops(void)
{
	return hub.loops;
}

void hub_close(void)
{
	if (hub.kind == HUB_URING)
		hub_uring_close();
	else if (hub.kind == HUB_EPOLL)
		hub_epoll_close();
	timers_free(&hub.timers);
	hub.kind = HUB_AUTO;
	hub.loops = 0;
}
