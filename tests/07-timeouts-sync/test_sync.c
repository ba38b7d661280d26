/* Chapter 07's primitives, as specifications: events, channels, semaphores
 * and pools, each waking its waiters first come, first served; deadlines on
 * every wait, green calls included; and cancellation, which wakes a
 * coroutine from any wait with ECANCELED so that it cleans up and ends.
 * Coroutines note what they saw in a trace; the assertions run on the main
 * stack after co_run() returns. Every wait here has a deadline, so a broken
 * primitive fails a test instead of hanging it. */
#define _GNU_SOURCE

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "co.h"
#include "green.h"
#include "harness.h"
#include "sync.h"

/* A deadline for waits that should never get there: long enough not to be
 * reached under Valgrind, short enough that a broken primitive fails fast. */
enum { NEVER_MS = 300 };

static void run_all(void)
{
	if (co_run() != 0)
		th_fail("co_run() returned -1: the coroutines deadlocked (see stderr)");
}

/* A deadline ms from now, stretched under Valgrind: for waits that should
 * end long before it. Deadlines meant to pass are not stretched. */
static int64_t in_ms(int ms)
{
	return co_now_ms() + th_ms(ms);
}

/* errno as a short word for the trace. */
static const char *err_name(int err)
{
	switch (err) {
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECANCELED: return "ECANCELED";
	case EPIPE: return "EPIPE";
	case EBADF: return "EBADF";
	case ENOSYS: return "ENOSYS";
	case ESRCH: return "ESRCH";
	default: return strerror(err);
	}
}

/* ---- Events --------------------------------------------------------------- */

static struct co_event event;

static void event_waiter(void *arg)
{
	const char *name = arg;
	if (co_event_wait(&event, in_ms(NEVER_MS)) == 0)
		th_note("%s ", name);
	else
		th_note("%s:%s ", name, err_name(errno));
}

static void event_setter(void *arg)
{
	(void)arg;
	co_sleep(10);
	th_note("set ");
	co_event_set(&event);
}

START_TEST(event_set_wakes_every_waiter_in_arrival_order)
{
	th_about("", "co_event_set() must wake every coroutine waiting on the event, first "
		 "come, first served");
	th_trace_start();
	co_event_init(&event);
	co_spawn(event_waiter, "a");
	co_spawn(event_waiter, "b");
	co_spawn(event_waiter, "c");
	co_spawn(event_setter, NULL);
	run_all();
	th_expect_trace("set a b c ", "three coroutines waited on an event a fourth set");
}
END_TEST

static void wait_set_then_cleared(void *arg)
{
	(void)arg;
	th_note(co_event_wait(&event, in_ms(NEVER_MS)) == 0 ? "at once " : "waited ");
	co_event_clear(&event);
	if (co_event_wait(&event, co_now_ms() + 20) < 0)
		th_note("cleared:%s", err_name(errno));
}

START_TEST(event_wait_returns_at_once_when_set_and_times_out_when_clear)
{
	th_about("", "a set event lets waiters through at once; a cleared one makes them wait "
		 "until their deadline, then fail with ETIMEDOUT");
	th_trace_start();
	co_event_init(&event);
	co_event_set(&event);
	co_spawn(wait_set_then_cleared, NULL);
	run_all();
	th_expect_trace("at once cleared:ETIMEDOUT", "a coroutine waited on a set event, cleared "
		     "it and waited 20 ms more");
}
END_TEST

/* ---- Channels ------------------------------------------------------------- */

static struct co_chan chan;

static void init_chan(size_t capacity)
{
	if (co_chan_init(&chan, capacity) < 0)
		th_fail("co_chan_init(%zu): %s", capacity, strerror(errno));
}

static void send_numbers(void *arg)
{
	long count = (long)(intptr_t)arg;
	for (long i = 1; i <= count; i++) {
		if (co_chan_send(&chan, (void *)(intptr_t)i, in_ms(NEVER_MS)) < 0) {
			th_note("send %ld:%s ", i, err_name(errno));
			return;
		}
		th_note("s%ld ", i);
	}
	co_chan_close(&chan);
}

static void receive_all(void *arg)
{
	(void)arg;
	void *item;
	while (co_chan_recv(&chan, &item, in_ms(NEVER_MS)) == 0)
		th_note("r%ld ", (long)(intptr_t)item);
	th_note("end:%s", err_name(errno));
}

START_TEST(channel_delivers_items_in_order)
{
	th_about("chan_send chan_recv", "items must come out of a channel in the order they "
		 "went in, none lost, and a closed, empty channel reports EPIPE");
	th_trace_start();
	init_chan(8);
	co_spawn(send_numbers, (void *)(intptr_t)5);
	co_spawn(receive_all, NULL);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("s1 s2 s3 s4 s5 r1 r2 r3 r4 r5 end:EPIPE",
		     "a sender put 5 items in a channel of 8 and closed it; a receiver took them");
}
END_TEST

START_TEST(channel_send_blocks_when_full_until_a_receive)
{
	th_about("chan_send chan_recv", "a send to a full channel must wait until a receive "
		 "makes room, and then go on where it stopped");
	th_trace_start();
	init_chan(2);
	co_spawn(send_numbers, (void *)(intptr_t)4);
	co_spawn(receive_all, NULL);
	run_all();
	co_chan_free(&chan);
	/* s3 waits for room; r1 makes it and moves item 3 into the ring, so the
	 * sender, woken, notes s3 after the receiver has had its turn. */
	th_expect_trace("s1 s2 r1 r2 r3 s3 s4 r4 end:EPIPE",
		     "a sender put 4 items in a channel of 2 while a receiver took them");
}
END_TEST

static void receive_one_then_the_rest(void *arg)
{
	(void)arg;
	void *item;
	if (co_chan_recv(&chan, &item, in_ms(NEVER_MS)) == 0)
		th_note("r%ld ", (long)(intptr_t)item);
	co_sleep(10);
	receive_all(NULL);
}

START_TEST(channel_receive_lets_a_waiting_sender_in_at_once)
{
	th_about("chan_send chan_recv", "a receive from a full channel makes room: the item of a "
		 "sender waiting for room must go into the ring then, and the sender go on, not "
		 "wait until the ring is empty");
	th_trace_start();
	init_chan(2);
	co_spawn(send_numbers, (void *)(intptr_t)3);
	co_spawn(receive_one_then_the_rest, NULL);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("s1 s2 r1 s3 r2 r3 end:EPIPE", "a sender put 3 items in a channel of 2; "
		     "a receiver took one, slept 10 ms, then took the rest");
}
END_TEST

static void receive_one(void *arg)
{
	const char *name = arg;
	void *item;
	if (co_chan_recv(&chan, &item, in_ms(NEVER_MS)) == 0)
		th_note("%s:%ld ", name, (long)(intptr_t)item);
	else
		th_note("%s:%s ", name, err_name(errno));
}

static void send_later(void *arg)
{
	long count = (long)(intptr_t)arg;
	co_sleep(10);
	for (long i = 1; i <= count; i++) {
		th_note("send%ld ", i);
		if (co_chan_send(&chan, (void *)(intptr_t)i, in_ms(NEVER_MS)) < 0)
			th_note("failed:%s ", err_name(errno));
	}
}

START_TEST(channel_receive_blocks_until_a_send)
{
	th_about("chan_send chan_recv", "a receive from an empty channel must wait until an "
		 "item is sent");
	th_trace_start();
	init_chan(4);
	co_spawn(receive_one, "r");
	co_spawn(send_later, (void *)(intptr_t)1);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("send1 r:1 ", "a receiver waited while a sender slept 10 ms and sent 1");
}
END_TEST

START_TEST(channel_wakes_blocked_receivers_first_come_first_served)
{
	th_about("chan_send chan_recv", "receivers waiting on a channel must get the items in "
		 "the order they started waiting, even when they wake together");
	th_trace_start();
	init_chan(4);
	co_spawn(receive_one, "a");
	co_spawn(receive_one, "b");
	co_spawn(receive_one, "c");
	co_spawn(send_later, (void *)(intptr_t)3);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("send1 send2 send3 a:1 b:2 c:3 ", "three receivers waited; a sender "
		     "sent 1, 2, 3");
}
END_TEST

static void fill_then_close(void *arg)
{
	(void)arg;
	for (long i = 1; i <= 3; i++)
		co_chan_send(&chan, (void *)(intptr_t)i, in_ms(NEVER_MS));
	co_chan_close(&chan);
	th_note("closed ");
	if (co_chan_send(&chan, (void *)(intptr_t)4, in_ms(NEVER_MS)) < 0)
		th_note("send:%s ", err_name(errno));
}

START_TEST(channel_close_lets_receivers_drain_then_reports_closed)
{
	th_about("chan_send chan_recv", "closing a channel loses nothing: receivers get every "
		 "item sent before the close, then EPIPE; a send after the close fails with EPIPE");
	th_trace_start();
	init_chan(4);
	co_spawn(fill_then_close, NULL);
	co_spawn(receive_all, NULL);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("closed send:EPIPE r1 r2 r3 end:EPIPE", "a sender sent 3 items, closed "
		     "the channel and sent a 4th; a receiver then took what was there");
}
END_TEST

static void send_one(void *arg)
{
	const char *name = arg;
	if (co_chan_send(&chan, (void *)name, in_ms(NEVER_MS)) == 0)
		th_note("%s:sent ", name);
	else
		th_note("%s:%s ", name, err_name(errno));
}

static void close_later(void *arg)
{
	(void)arg;
	co_sleep(10);
	th_note("close ");
	co_chan_close(&chan);
}

START_TEST(channel_close_wakes_blocked_senders_with_epipe)
{
	th_about("chan_send", "senders waiting for room in a channel that gets closed must wake "
		 "with EPIPE (their items were not sent), not wait for ever");
	th_trace_start();
	init_chan(1);
	co_spawn(send_one, "a");	/* fills the channel */
	co_spawn(send_one, "b");
	co_spawn(send_one, "c");
	co_spawn(close_later, NULL);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("a:sent close b:EPIPE c:EPIPE ", "three senders on a channel of 1, closed "
		     "after 10 ms");
}
END_TEST

START_TEST(channel_close_wakes_blocked_receivers_with_epipe)
{
	th_about("chan_recv", "receivers waiting on an empty channel that gets closed must wake "
		 "with EPIPE");
	th_trace_start();
	init_chan(1);
	co_spawn(receive_one, "a");
	co_spawn(receive_one, "b");
	co_spawn(close_later, NULL);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("close a:EPIPE b:EPIPE ", "two receivers on an empty channel, closed "
		     "after 10 ms");
}
END_TEST

START_TEST(unbuffered_channel_hands_items_over_directly)
{
	th_about("chan_send chan_recv", "with capacity 0 a send waits for a receiver, and the "
		 "item goes straight from one to the other");
	th_trace_start();
	init_chan(0);
	co_spawn(send_one, "x");
	co_spawn(send_one, "y");
	co_spawn(receive_all, NULL);
	co_spawn(close_later, NULL);
	run_all();
	co_chan_free(&chan);
	/* The receiver prints the pointer as a number; compare by the items. */
	const char *trace = th_trace();
	if (strstr(trace, "x:sent y:sent ") == NULL || strstr(trace, "close end:EPIPE") == NULL)
		th_fail("two senders and a receiver on an unbuffered channel closed after 10 ms: "
			"expected both items sent, then \"close end:EPIPE\"; the trace was \"%s\"",
			trace);
}
END_TEST

static void receive_with_short_deadline(void *arg)
{
	(void)arg;
	void *item;
	if (co_chan_recv(&chan, &item, co_now_ms() + 10) < 0)
		th_note("first:%s ", err_name(errno));
	if (co_chan_recv(&chan, &item, in_ms(NEVER_MS)) == 0)
		th_note("then:%ld", (long)(intptr_t)item);
}

static void send_at_5_ms(void *arg)
{
	(void)arg;
	co_sleep(5);
	co_chan_send(&chan, (void *)(intptr_t)7, in_ms(NEVER_MS));
}

/* Computes for 30 ms without waiting, so that the sender's 5 ms sleep and
 * the receiver's 10 ms deadline both expire in the same hub_poll(): the
 * sender then runs, and sends, while the receiver is runnable with
 * ETIMEDOUT but still in the channel's queue. */
static void compute_30_ms(void *arg)
{
	(void)arg;
	int64_t until = co_now_ms() + 30;
	while (co_now_ms() < until)
		continue;
}

START_TEST(channel_receive_times_out_and_loses_no_later_item)
{
	th_about("chan_send chan_recv", "a receive whose deadline passed fails with ETIMEDOUT; an "
		 "item sent before that receiver has run must not be handed to it (it would drop "
		 "it) but kept for the next receive");
	th_trace_start();
	init_chan(1);
	co_spawn(receive_with_short_deadline, NULL);
	co_spawn(send_at_5_ms, NULL);
	co_spawn(compute_30_ms, NULL);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("first:ETIMEDOUT then:7", "a receive with a 10 ms deadline and an item sent "
		     "at 5 ms, both due while another coroutine computed for 30 ms");
}
END_TEST

/* ---- Cancellation --------------------------------------------------------- */

static co_id target;

static void cancel_later(void *arg)
{
	(void)arg;
	co_sleep(10);
	th_note("cancel ");
	if (co_cancel(target) < 0)
		th_note("failed:%s ", err_name(errno));
}

START_TEST(cancel_wakes_a_waiting_receiver_with_ecanceled)
{
	th_about("cancel", "co_cancel() must wake the coroutine from whatever it waits on, here "
		 "a channel, with ECANCELED");
	th_trace_start();
	init_chan(1);
	target = co_spawn(receive_one, "r");
	co_spawn(cancel_later, NULL);
	run_all();
	co_chan_free(&chan);
	th_expect_trace("cancel r:ECANCELED ", "a receiver on an empty channel, cancelled after "
		     "10 ms");
}
END_TEST

static int pair[2];

static void sleeper_that_cleans_up(void *arg)
{
	(void)arg;
	if (co_sleep(NEVER_MS) < 0)
		th_note("sleep:%s ", err_name(errno));
}

static void reader_that_cleans_up(void *arg)
{
	(void)arg;
	char buf[8];
	if (green_read_until(pair[0], buf, sizeof buf, in_ms(NEVER_MS)) < 0)
		th_note("read:%s ", err_name(errno));
	if (green_close(pair[0]) == 0)
		th_note("closed ");
}

static co_id targets[2];

static void cancel_both(void *arg)
{
	(void)arg;
	co_sleep(10);
	co_cancel(targets[0]);
	co_cancel(targets[1]);
}

START_TEST(cancel_wakes_a_sleeper_and_a_reader_which_clean_up)
{
	th_about("cancel", "a cancelled coroutine wakes from a sleep or a socket read with "
		 "ECANCELED, and its own code then runs its cleanup (closing its socket)");
	th_trace_start();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
		th_fail("socketpair: %s", strerror(errno));
	targets[0] = co_spawn(sleeper_that_cleans_up, NULL);
	targets[1] = co_spawn(reader_that_cleans_up, NULL);
	co_spawn(cancel_both, NULL);
	run_all();
	close(pair[1]);
	th_expect_trace("sleep:ECANCELED read:ECANCELED closed ", "a sleeper and a reader, "
		     "cancelled after 10 ms");
}
END_TEST

static void keeps_trying(void *arg)
{
	(void)arg;
	if (co_sleep(NEVER_MS) < 0)
		th_note("1:%s ", err_name(errno));
	if (co_sleep(10) < 0)
		th_note("2:%s ", err_name(errno));
	if (co_event_wait(&event, in_ms(NEVER_MS)) < 0)
		th_note("3:%s ", err_name(errno));
	char c;
	if (green_read_until(pair[0], &c, 1, in_ms(NEVER_MS)) < 0)
		th_note("4:%s", err_name(errno));
}

START_TEST(a_cancelled_coroutine_fails_every_later_wait)
{
	th_about("cancel", "cancellation sticks: every wait the coroutine starts after being "
		 "cancelled fails at once with ECANCELED, and so does every green call, even "
		 "one with data ready, so that it cannot ignore it");
	th_trace_start();
	co_event_init(&event);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
		th_fail("socketpair: %s", strerror(errno));
	if (write(pair[1], "x", 1) != 1)
		th_fail("write: %s", strerror(errno));
	target = co_spawn(keeps_trying, NULL);
	co_spawn(cancel_later, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("cancel 1:ECANCELED 2:ECANCELED 3:ECANCELED 4:ECANCELED", "a coroutine "
		     "cancelled while sleeping, that then slept, waited on an event, and read a "
		     "socket with a byte ready");
}
END_TEST

static void cancel_the_finished(void *arg)
{
	(void)arg;
	co_id done = co_spawn(sleeper_that_cleans_up, NULL);
	co_cancel(done);
	co_join(done);
	if (co_cancel(done) < 0)
		th_note("again:%s", err_name(errno));
}

START_TEST(cancelling_a_finished_coroutine_reports_esrch)
{
	th_about("cancel", "there is nothing to cancel once a coroutine has ended: ESRCH");
	th_trace_start();
	co_spawn(cancel_the_finished, NULL);
	run_all();
	th_expect_trace("sleep:ECANCELED again:ESRCH", "a coroutine cancelled before it ran, "
		     "joined, then cancelled again");
}
END_TEST

/* ---- Deadlines on green calls ------------------------------------------- */

static void read_with_deadline(void *arg)
{
	(void)arg;
	char buf[8] = "";
	int64_t start = co_now_ms();
	if (green_read_until(pair[0], buf, sizeof buf - 1, start + 20) < 0)
		th_note("first:%s ", err_name(errno));
	if (co_now_ms() < start + 20)
		th_note("too early ");
	if (green_read_until(pair[0], buf, sizeof buf - 1, in_ms(NEVER_MS)) > 0)
		th_note("then:%s", buf);
}

static void write_at_40_ms(void *arg)
{
	(void)arg;
	co_sleep(40);
	green_write_until(pair[1], "late", 4, in_ms(NEVER_MS));
}

START_TEST(green_read_until_fails_with_etimedout_at_its_deadline)
{
	th_about("", "a green read with a deadline fails with ETIMEDOUT once the deadline has "
		 "passed, not before, and the socket works as before afterwards");
	th_trace_start();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
		th_fail("socketpair: %s", strerror(errno));
	co_spawn(read_with_deadline, NULL);
	co_spawn(write_at_40_ms, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("first:ETIMEDOUT then:late", "a read with a 20 ms deadline, data at 40 ms");
}
END_TEST

/* ---- Semaphores ----------------------------------------------------------- */

static struct co_sem sem;

/* A coroutine that takes a permit, holds it a while, and gives it back. */
struct holder {
	const char *name;
	long hold_ms;
};

static void acquire_and_hold(void *arg)
{
	const struct holder *h = arg;
	if (co_sem_acquire(&sem, in_ms(NEVER_MS)) < 0) {
		th_note("%s:%s ", h->name, err_name(errno));
		return;
	}
	th_note("%s+ ", h->name);
	co_sleep(h->hold_ms);
	th_note("%s- ", h->name);
	co_sem_release(&sem);
}

START_TEST(semaphore_admits_count_then_blocks)
{
	th_about("sem_acquire", "a semaphore of 2 lets two coroutines in; the third waits until "
		 "one of them releases");
	th_trace_start();
	co_sem_init(&sem, 2);
	static const struct holder holders[] = { { "a", 10 }, { "b", 40 }, { "c", 10 } };
	for (size_t i = 0; i < 3; i++)
		co_spawn(acquire_and_hold, (void *)&holders[i]);
	run_all();
	th_expect_trace("a+ b+ a- c+ c- b- ", "three coroutines took a semaphore of 2 and held it "
		     "10, 40 and 10 ms");
	if (sem.count != 2)
		th_fail("after every permit came back the count is %ld, not 2", sem.count);
}
END_TEST

START_TEST(semaphore_release_wakes_waiters_in_arrival_order)
{
	th_about("sem_acquire", "waiters for a semaphore get its permits first come, first "
		 "served");
	th_trace_start();
	co_sem_init(&sem, 1);
	static const struct holder holders[] = { { "a", 10 }, { "b", 10 }, { "c", 10 }, { "d", 10 } };
	for (size_t i = 0; i < 4; i++)
		co_spawn(acquire_and_hold, (void *)&holders[i]);
	run_all();
	th_expect_trace("a+ a- b+ b- c+ c- d+ d- ", "four coroutines took a semaphore of 1");
}
END_TEST

static void acquire_briefly(void *arg)
{
	(void)arg;
	if (co_sem_acquire(&sem, co_now_ms() + 5) < 0)
		th_note("impatient:%s ", err_name(errno));
	else
		th_note("impatient got it ");
}

START_TEST(semaphore_acquire_times_out_and_loses_no_permit)
{
	th_about("sem_acquire", "an acquire whose deadline passes fails with ETIMEDOUT, takes no "
		 "permit, and the permit released later goes to the next waiter");
	th_trace_start();
	co_sem_init(&sem, 1);
	static const struct holder holders[] = { { "a", 10 }, { "b", 10 } };
	co_spawn(acquire_and_hold, (void *)&holders[0]);
	co_spawn(acquire_briefly, NULL);
	co_spawn(acquire_and_hold, (void *)&holders[1]);
	run_all();
	th_expect_trace("a+ impatient:ETIMEDOUT a- b+ b- ", "a held a semaphore of 1 for 10 ms; "
		     "one waiter gave up after 5 ms, another waited");
	if (sem.count != 1)
		th_fail("after every permit came back the count is %ld, not 1", sem.count);
}
END_TEST

static co_id cancelled_waiter;

static void acquire_until_cancelled(void *arg)
{
	(void)arg;
	if (co_sem_acquire(&sem, in_ms(NEVER_MS)) < 0) {
		th_note("w:%s ", err_name(errno));
		return;
	}
	/* A waiter that believes it got a permit gives it back when done. */
	th_note("w+ ");
	co_sem_release(&sem);
}

static void cancel_the_waiter(void *arg)
{
	(void)arg;
	co_sleep(5);
	th_note("cancel ");
	if (co_cancel(cancelled_waiter) < 0)
		th_note("failed:%s ", err_name(errno));
}

START_TEST(semaphore_keeps_its_count_when_a_waiter_is_cancelled)
{
	th_about("sem_acquire cancel", "an acquire woken by co_cancel() must fail with "
		 "ECANCELED and take no permit: a waiter that returns 0 then believes it holds "
		 "one, and gives back a permit it never had");
	th_trace_start();
	co_sem_init(&sem, 1);
	static const struct holder holder = { "a", 20 };
	co_spawn(acquire_and_hold, (void *)&holder);
	cancelled_waiter = co_spawn(acquire_until_cancelled, NULL);
	co_spawn(cancel_the_waiter, NULL);
	run_all();
	th_expect_trace("a+ cancel w:ECANCELED a- ", "a held a semaphore of 1 for 20 ms; a "
		     "second coroutine waited for it and was cancelled after 5 ms");
	if (sem.count != 1)
		th_fail("a semaphore made with 1 permit has %ld once everyone is done: the "
			"cancelled waiter's acquire must not count as taking a permit", sem.count);
}
END_TEST

/* ---- Pools ---------------------------------------------------------------- */

static struct co_pool pool;
static size_t most_at_once;

static void pool_task(void *arg)
{
	(void)arg;
	if (co_pool_running(&pool) > most_at_once)
		most_at_once = co_pool_running(&pool);
	co_sleep(5);
}

static void spawn_ten(void *arg)
{
	(void)arg;
	/* One deadline for all: a pool that never frees a slot fails the test
	 * in NEVER_MS, not in ten times that. */
	int64_t deadline = in_ms(NEVER_MS);
	for (int i = 0; i < 10; i++)
		if (co_pool_spawn(&pool, pool_task, NULL, deadline) == 0)
			th_note("spawn %d:%s ", i, err_name(errno));
	if (co_pool_wait(&pool, deadline) == 0)
		th_note("all done, %zu left", co_pool_running(&pool));
}

START_TEST(pool_runs_at_most_n_handlers_at_once)
{
	th_about("sem_acquire", "a pool of 3 must never run more than 3 of its coroutines at "
		 "once; co_pool_spawn() waits for a free slot");
	th_trace_start();
	most_at_once = 0;
	co_pool_init(&pool, 3);
	co_spawn(spawn_ten, NULL);
	run_all();
	th_expect_trace("all done, 0 left", "ten tasks spawned in a pool of 3, then waited for");
	if (most_at_once != 3)
		th_fail("ten 5-ms tasks in a pool of 3: at most %zu ran at once; expected 3",
			most_at_once);
}
END_TEST

static void pool_sleeper(void *arg)
{
	(void)arg;
	if (co_sleep(NEVER_MS) < 0)
		th_note("%s ", err_name(errno));
}

static void spawn_then_cancel(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		co_pool_spawn(&pool, pool_sleeper, NULL, in_ms(NEVER_MS));
	if (co_pool_wait(&pool, co_now_ms() + 10) < 0)
		th_note("wait:%s ", err_name(errno));
	co_pool_cancel(&pool);
	if (co_pool_wait(&pool, in_ms(NEVER_MS)) == 0)
		th_note("empty");
}

START_TEST(pool_cancel_ends_every_handler)
{
	th_about("cancel", "co_pool_cancel() cancels each coroutine of the pool; co_pool_wait() "
		 "returns once they have all ended");
	th_trace_start();
	co_pool_init(&pool, 10);
	co_spawn(spawn_then_cancel, NULL);
	run_all();
	th_expect_trace("wait:ETIMEDOUT ECANCELED ECANCELED ECANCELED empty", "three sleepers in "
		     "a pool, waited for 10 ms, then cancelled");
}
END_TEST

static Suite *sync_suite(void)
{
	Suite *s = th_suite("07-timeouts-sync");
	TCase *tc = th_tcase(s, "events", "");
	th_test(tc, event_set_wakes_every_waiter_in_arrival_order);
	th_test(tc, event_wait_returns_at_once_when_set_and_times_out_when_clear);
	th_test(tc, green_read_until_fails_with_etimedout_at_its_deadline);

	tc = th_tcase(s, "channels", "chan_send chan_recv");
	th_test(tc, channel_delivers_items_in_order);
	th_test(tc, channel_send_blocks_when_full_until_a_receive);
	th_test(tc, channel_receive_lets_a_waiting_sender_in_at_once);
	th_test(tc, channel_receive_blocks_until_a_send);
	th_test(tc, channel_wakes_blocked_receivers_first_come_first_served);
	th_test(tc, channel_close_lets_receivers_drain_then_reports_closed);
	th_test(tc, unbuffered_channel_hands_items_over_directly);
	th_test(tc, channel_receive_times_out_and_loses_no_later_item);

	/* Senders alone, and receivers alone, on a channel that gets closed. */
	tc = th_tcase(s, "channel senders", "chan_send");
	th_test(tc, channel_close_wakes_blocked_senders_with_epipe);
	tc = th_tcase(s, "channel receivers", "chan_recv");
	th_test(tc, channel_close_wakes_blocked_receivers_with_epipe);

	tc = th_tcase(s, "cancellation", "cancel");
	th_test(tc, cancel_wakes_a_waiting_receiver_with_ecanceled);
	th_test(tc, cancel_wakes_a_sleeper_and_a_reader_which_clean_up);
	th_test(tc, a_cancelled_coroutine_fails_every_later_wait);
	th_test(tc, cancelling_a_finished_coroutine_reports_esrch);
	th_test(tc, pool_cancel_ends_every_handler);

	tc = th_tcase(s, "semaphores", "sem_acquire");
	th_test(tc, semaphore_admits_count_then_blocks);
	th_test(tc, semaphore_release_wakes_waiters_in_arrival_order);
	th_test(tc, semaphore_acquire_times_out_and_loses_no_permit);
	th_test(tc, pool_runs_at_most_n_handlers_at_once);

	tc = th_tcase(s, "semaphores and cancellation", "sem_acquire cancel");
	th_test(tc, semaphore_keeps_its_count_when_a_waiter_is_cancelled);
	return s;
}

int main(void)
{
	return th_run(sync_suite());
}
