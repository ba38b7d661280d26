/* The hub's rules, for every chapter with the epoll hub (05 on): coroutines
 * that keep yielding do not starve those waiting for a socket or a timer; an
 * fd the hub forgets leaves the epoll set even when it stays open (a dup, or
 * an fd handed to another thread), so the hub does not spin on it; an fd
 * forgotten and closed can come back as another socket and be waited on; a
 * sleep never ends before its time. Assertions run on the main stack, after
 * co_run() returns. */
#define _GNU_SOURCE

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "co.h"
#include "harness.h"
#include "hub.h"
#include "promises.h"
#include "sched.h"

static void run_all(void)
{
	if (co_run() != 0)
		th_fail("co_run() returned -1: the coroutines deadlocked (see stderr)");
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- Yielding is fair to those who wait ----------------------------------- */

/* A coroutine that polls a flag with co_yield(), as gevent code does with
 * gevent.sleep(0). It gives up after a second (so that the test fails
 * instead of hanging), and says how many rounds it went. */
static struct {
	bool done;
	long rounds;
	bool gave_up;
} poller;

static void poll_with_yield(void *arg)
{
	(void)arg;
	int64_t until = now_ns() + (int64_t)th_ms(1000) * 1000000;
	while (!poller.done) {
		poller.rounds++;
		if (now_ns() > until) {
			poller.gave_up = true;
			return;
		}
		co_yield();
	}
}

static void sleep_then_set(void *arg)
{
	(void)arg;
	co_sleep(10);
	poller.done = true;
}

START_TEST(a_coroutine_that_keeps_yielding_lets_timers_fire)
{
	th_about(th_promise()->hub_todos, "co_run() looks at the hub only when no coroutine can "
		 "run: a coroutine that keeps yielding then stops every timer and socket. Between "
		 "two rounds of the run queue, let the hub look (epoll_wait with a 0 timeout, then "
		 "the expired timers)");
	memset(&poller, 0, sizeof poller);
	co_spawn(poll_with_yield, NULL);
	co_spawn(sleep_then_set, NULL);
	run_all();
	if (poller.gave_up)
		th_fail("a coroutine slept 10 ms while another yielded in a loop until it woke: after "
			"%ld yields in %d ms, the sleeper had still not woken", poller.rounds,
			th_ms(1000));
}
END_TEST

static int pair[2];

static void read_then_set(void *arg)
{
	(void)arg;
	char c;
	if (hub_wait_fd(pair[0], HUB_READ, -1) == 0 && read(pair[0], &c, 1) == 1)
		poller.done = true;
}

START_TEST(a_coroutine_that_keeps_yielding_lets_a_reader_wake)
{
	th_about(th_promise()->hub_todos, "co_run() looks at the hub only when no coroutine can "
		 "run: a coroutine that keeps yielding then keeps every socket's waiter asleep. "
		 "Between two rounds of the run queue, let the hub look (epoll_wait, 0 timeout)");
	memset(&poller, 0, sizeof poller);
	th_socket_pair(pair);
	if (write(pair[1], "x", 1) != 1)
		th_fail("write: %s", strerror(errno));
	co_spawn(read_then_set, NULL);
	co_spawn(poll_with_yield, NULL);
	run_all();
	hub_forget_fd(pair[0]);
	close(pair[0]);
	close(pair[1]);
	if (poller.gave_up)
		th_fail("a coroutine waited to read a socket that had a byte for it, while another "
			"yielded in a loop until the byte was read: after %ld yields in %d ms, the "
			"reader had still not woken", poller.rounds, th_ms(1000));
}
END_TEST

/* ---- Forgotten fds leave the epoll set ------------------------------------ */

static uint64_t loops_while_asleep;

/* Register fd with the hub (a short wait that times out), then forget it
 * while it stays open (and, if close_it, close the number: a dup keeps the
 * socket open). Then make it readable, and count how often the hub goes
 * round while this coroutine sleeps 100 ms: once or twice, not thousands of
 * times. */
static void forget_then_sleep(int fd, bool close_it)
{
	if (hub_wait_fd(fd, HUB_READ, co_deadline_after(10)) == 0 || errno != ETIMEDOUT) {
		th_note("the wait on a silent socket did not time out ");
		return;
	}
	hub_forget_fd(fd);
	if (close_it)
		close(fd);
	if (write(pair[1], "x", 1) != 1)
		th_note("write failed ");
	uint64_t before = hub_loops();
	co_sleep(100);
	loops_while_asleep = hub_loops() - before;
}

static void forget_an_open_fd(void *arg)
{
	(void)arg;
	forget_then_sleep(pair[0], false);
}

START_TEST(a_forgotten_fd_that_stays_open_does_not_wake_the_hub)
{
	th_about(th_promise()->hub_todos, "hub_forget_fd() must take the fd out of the epoll set: "
		 "a socket that stays open (handed to another thread's hub, say) and becomes "
		 "readable is otherwise reported at every epoll_wait, and the hub spins");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(forget_an_open_fd, NULL);
	run_all();
	close(pair[0]);
	close(pair[1]);
	th_expect_trace("", "a coroutine waited on a socket, then forgot it");
	if (loops_while_asleep > 5)
		th_fail("after hub_forget_fd() on a socket left open, which then became readable, the "
			"hub went round %llu times while a coroutine slept 100 ms: the socket was "
			"still in the epoll set, reported at every epoll_wait",
			(unsigned long long)loops_while_asleep);
}
END_TEST

static int duplicate;

static void forget_and_close_a_dup(void *arg)
{
	(void)arg;
	forget_then_sleep(pair[0], true);
}

START_TEST(a_forgotten_fd_closed_while_a_dup_stays_open_does_not_wake_the_hub)
{
	th_about(th_promise()->hub_todos, "close() takes an fd out of the epoll set only if no "
		 "other fd refers to the socket; after a dup(), the registration stays and is "
		 "reported at every epoll_wait: hub_forget_fd() must take it out itself");
	th_trace_start();
	th_socket_pair(pair);
	duplicate = dup(pair[0]);
	if (duplicate < 0)
		th_fail("dup: %s", strerror(errno));
	co_spawn(forget_and_close_a_dup, NULL);
	run_all();
	close(duplicate);
	close(pair[1]);
	th_expect_trace("", "a coroutine waited on a socket, then forgot and closed it; a dup of "
			"it stayed open");
	if (loops_while_asleep > 5)
		th_fail("after hub_forget_fd() and close() on a socket whose dup stayed open, and "
			"which then became readable, the hub went round %llu times while a "
			"coroutine slept 100 ms: the socket was still in the epoll set",
			(unsigned long long)loops_while_asleep);
}
END_TEST

/* ---- The rule: forget, then close; the number may come back --------------- */

static void wait_on_a_reused_number(void *arg)
{
	(void)arg;
	int first[2];
	th_socket_pair(first);
	if (hub_wait_fd(first[0], HUB_READ, co_deadline_after(10)) == 0 || errno != ETIMEDOUT) {
		th_note("the wait on a silent socket did not time out ");
		return;
	}
	hub_forget_fd(first[0]);
	close(first[0]);
	close(first[1]);
	th_socket_pair(pair);	/* the lowest free numbers: the same ones */
	if (pair[0] != first[0] && pair[1] != first[0])
		th_note("(the number did not come back) ");
	int reader = pair[0] == first[0] ? pair[0] : pair[1];
	int writer = reader == pair[0] ? pair[1] : pair[0];
	if (write(writer, "x", 1) != 1)
		th_note("write failed ");
	if (hub_wait_fd(reader, HUB_READ, co_deadline_after(th_ms(1000))) < 0)
		th_note("the wait on the new socket failed: %s ", strerror(errno));
	else
		th_note("woken");
}

START_TEST(an_fd_forgotten_and_closed_can_come_back_as_another_socket)
{
	th_about(th_promise()->hub_todos, "after hub_forget_fd() and close(), the fd's number may "
		 "come back as a new socket, which must be registered afresh when a coroutine "
		 "waits on it");
	th_trace_start();
	co_spawn(wait_on_a_reused_number, NULL);
	run_all();
	close(pair[0]);
	close(pair[1]);
	th_expect_trace("woken", "a coroutine waited on a socket, forgot and closed it, then "
			"waited on a new readable socket with the same number");
}
END_TEST

/* ---- Sleeps are never short ----------------------------------------------- */

static int early, sleeps;
static int64_t shortest_ns, shortest_asked;
static bool sleeping;

/* Keeps the hub waking up all the time, each at some moment within a
 * millisecond: a byte back and forth over a socket pair, one wait at a time,
 * while the other coroutine sleeps. */
static void keep_the_hub_busy(void *arg)
{
	(void)arg;
	char c = 'x';
	while (sleeping) {
		if (write(pair[1], &c, 1) != 1 || hub_wait_fd(pair[0], HUB_READ, -1) < 0 ||
		    read(pair[0], &c, 1) != 1) {
			th_note("the ping-pong failed ");
			return;
		}
	}
}

static void sleep_many_times(void *arg)
{
	(void)arg;
	for (int i = 0; i < 40; i++) {
		long ms = 1 + i % 3;
		int64_t start = now_ns();
		co_sleep(ms);
		int64_t slept = now_ns() - start;
		sleeps++;
		if (slept < ms * 1000000) {
			early++;
			if (shortest_ns == 0 || slept < shortest_ns) {
				shortest_ns = slept;
				shortest_asked = ms;
			}
		}
	}
	sleeping = false;
}

START_TEST(a_sleep_never_ends_before_its_time)
{
	th_about(th_promise()->hub_todos, "a deadline of co_now_ms() + ms counts from the start of "
		 "the current millisecond, which may be almost over: count from the next one");
	th_trace_start();
	early = sleeps = 0;
	shortest_ns = shortest_asked = 0;
	sleeping = true;
	th_socket_pair(pair);
	co_spawn(sleep_many_times, NULL);
	co_spawn(keep_the_hub_busy, NULL);
	run_all();
	hub_forget_fd(pair[0]);
	close(pair[0]);
	close(pair[1]);
	th_expect_trace("", "a coroutine slept 40 times while another kept the hub busy");
	if (early > 0)
		th_fail("%d of %d sleeps of 1 to 3 ms ended early, while another coroutine kept the "
			"hub waking up; the shortest asked for %lld ms and slept %.3f ms", early,
			sleeps, (long long)shortest_asked, shortest_ns / 1e6);
}
END_TEST

int main(void)
{
	Suite *s = th_suite("hub rules");
	TCase *tc = th_tcase(s, "fairness", th_promise()->hub_todos);
	th_test(tc, a_coroutine_that_keeps_yielding_lets_timers_fire);
	th_test(tc, a_coroutine_that_keeps_yielding_lets_a_reader_wake);
	tc = th_tcase(s, "forgetting", th_promise()->hub_todos);
	th_test(tc, a_forgotten_fd_that_stays_open_does_not_wake_the_hub);
	th_test(tc, a_forgotten_fd_closed_while_a_dup_stays_open_does_not_wake_the_hub);
	th_test(tc, an_fd_forgotten_and_closed_can_come_back_as_another_socket);
	tc = th_tcase(s, "sleeping", th_promise()->hub_todos);
	th_test(tc, a_sleep_never_ends_before_its_time);
	return th_run(s);
}
