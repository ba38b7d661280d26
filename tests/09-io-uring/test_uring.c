/* Chapter 09's hub tests, on io_uring: calls handed to the kernel and their
 * completions dispatched, every request of a run queue submitted in one
 * io_uring_enter and every completion of one reaped in one loop, requests in
 * flight counted, and buffer ownership: a read cut short by its deadline, by
 * a cancel or by a close gives its buffer back only once the kernel has let
 * go of it; timers left armed after their wait (hub.c) wake nobody who no
 * longer waits for them. A few of the same scenarios run on the epoll
 * backend too.
 * Assertions run on the main stack, after co_run() returns.
 *
 * Where the kernel refuses io_uring (an old kernel, kernel.io_uring_disabled,
 * a container's seccomp profile), the io_uring tests are not run: one line on
 * stderr says "SKIPPED", how many and why, and the epoll ones still run. */
#define _GNU_SOURCE

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "co.h"
#include "green.h"
#include "harness.h"
#include "hub.h"
#include "sched.h"
#include "sync.h"

static void run_all(void)
{
	if (co_run() != 0)
		th_fail("co_run() returned -1: the coroutines deadlocked (see stderr)");
}

/* co_run() for a scenario that may end in "all coroutines are asleep": its
 * report goes to a file, returned in report (size bytes); the coroutines
 * left are then cancelled and run to their end, so that the next test (in
 * this same process under CK_FORK=no) starts with none. */
static int run_capturing(char *report, size_t size)
{
	FILE *file = tmpfile();
	if (file == NULL)
		th_fail("tmpfile: %s", strerror(errno));
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(file), STDERR_FILENO);
	int result = co_run();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(file);
	size_t len = fread(report, 1, size - 1, file);
	report[len] = '\0';
	fclose(file);
	if (result != 0) {
		co_cancel_all();
		co_run();
	}
	return result;
}

/* The test's hub: io_uring, or epoll for the tests of that backend. */
static void open_hub(enum hub_kind kind)
{
	if (hub_open(kind) < 0)
		th_fail("hub_open(%s): %s", kind == HUB_EPOLL ? "HUB_EPOLL" : "HUB_URING",
			strerror(errno));
}

/* A wait that does not end would hang the test. The guard turns it into a
 * failure: if it is still asleep after ms, it notes so and cancels every
 * coroutine. A scenario that ends well cancels the guard. (A coroutine that
 * waits uninterruptibly for a completion that never comes stays, and the
 * test's deadline, a second here, reports the hang.) */
static co_id guard_id;

static void guard(void *arg)
{
	int ms = (int)(intptr_t)arg;
	if (co_sleep(th_ms(ms)) == 0) {
		th_note("[still waiting after %d ms] ", ms);
		co_cancel_all();
	}
}

static void start_guard(int ms)
{
	guard_id = co_spawn(guard, (void *)(intptr_t)ms);
}

static void stop_guard(void)
{
	co_cancel(guard_id);
}

static int pair[2];

static void close_pair(void)
{
	close(pair[0]);
	close(pair[1]);
}

/* ---- A call handed to the kernel, and its completion ------------------- */

static struct {
	ssize_t got;
	int err;
	char buf[64];
} reader;

static void read_once(void *arg)
{
	(void)arg;
	reader.got = green_read(pair[0], reader.buf, sizeof reader.buf);
	reader.err = errno;
	stop_guard();
}

static void write_hello_later(void *arg)
{
	(void)arg;
	co_sleep(10);
	if (write(pair[1], "hello", 5) != 5)
		th_note("write failed ");
}

START_TEST(a_read_completes_with_the_bytes_that_came)
{
	th_about("submit_and_park complete", "green_read() on io_uring must hand the read to the "
		 "kernel, park, and wake with the completion's result: the bytes read");
	th_trace_start();
	open_hub(HUB_URING);
	memset(&reader, 0, sizeof reader);
	th_socket_pair(pair);
	co_spawn(read_once, NULL);
	co_spawn(write_hello_later, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a socket to which another wrote \"hello\" 10 ms "
			"later");
	if (reader.got != 5 || memcmp(reader.buf, "hello", 5) != 0)
		th_fail("green_read() returned %zd (%s) and read \"%.*s\"; expected 5 and \"hello\"",
			reader.got, reader.got < 0 ? strerror(reader.err) : "no error",
			reader.got > 0 ? (int)reader.got : 0, reader.buf);
}
END_TEST

/* 100 readers to submit at once. To be woken at once, 16: with
 * DEFER_TASKRUN, Linux 6.10 on finishes at most 20 completions' task work
 * per io_uring_enter (IO_LOCAL_TW_DEFAULT_MAX), the rest at the next ones. */
enum { READERS = 100, WOKEN_AT_ONCE = 16 };
static int pairs[READERS][2];
static int reads_done;
static uint64_t loops_at_write, last_wake_loop;

static void read_a_byte(void *arg)
{
	int i = (int)(intptr_t)arg;
	char c;
	if (green_read(pairs[i][0], &c, 1) == 1)
		reads_done++;
	if (hub_loops() > last_wake_loop)
		last_wake_loop = hub_loops();
}

static void open_pairs(int n, bool with_a_byte)
{
	for (int i = 0; i < n; i++) {
		th_socket_pair(pairs[i]);
		if (with_a_byte && write(pairs[i][1], "x", 1) != 1)
			th_fail("write: %s", strerror(errno));
	}
}

static void close_pairs(int n)
{
	for (int i = 0; i < n; i++) {
		close(pairs[i][0]);
		close(pairs[i][1]);
	}
}

START_TEST(one_io_uring_enter_submits_the_whole_run_queue)
{
	th_about("submit_and_park", "each request must wait in the submission ring for the hub's "
		 "next io_uring_enter, which hands over every request the run queue wrote: one "
		 "system call for them all, not one each");
	open_hub(HUB_URING);
	reads_done = 0;
	open_pairs(READERS, true);
	for (int i = 0; i < READERS; i++)
		co_spawn(read_a_byte, (void *)(intptr_t)i);
	struct hub_uring_stats before = hub_uring_stats();
	run_all();
	struct hub_uring_stats after = hub_uring_stats();
	close_pairs(READERS);
	uint64_t enters = after.enters - before.enters;
	uint64_t submitted = after.submitted - before.submitted;
	if (reads_done != READERS)
		th_fail("%d coroutines each read a socket that held a byte; %d of them got it",
			READERS, reads_done);
	if (submitted < READERS || enters > 2)
		th_fail("%d coroutines each read a socket that held a byte: the hub's io_uring_enter "
			"calls submitted %llu requests in %llu calls; expected all %d in one (two at "
			"most)%s", READERS, (unsigned long long)submitted, (unsigned long long)enters,
			READERS, submitted < READERS ? ": the others went to the kernel on their own, "
			"one system call each" : "");
}
END_TEST

static void write_a_byte_to_all(void *arg)
{
	(void)arg;
	co_sleep(10);	/* every reader has parked, its read in the kernel */
	loops_at_write = hub_loops();
	for (int i = 0; i < WOKEN_AT_ONCE; i++)
		if (write(pairs[i][1], "x", 1) != 1)
			th_note("write failed ");
}

START_TEST(one_io_uring_enter_wakes_every_completed_request)
{
	th_about("complete", "reap() must dispatch every completion that came, not just the "
		 "first: io_uring_for_each_cqe(), then one io_uring_cq_advance() for them all");
	th_trace_start();
	open_hub(HUB_URING);
	reads_done = 0;
	last_wake_loop = 0;
	open_pairs(WOKEN_AT_ONCE, false);
	for (int i = 0; i < WOKEN_AT_ONCE; i++)
		co_spawn(read_a_byte, (void *)(intptr_t)i);
	co_spawn(write_a_byte_to_all, NULL);
	run_all();
	close_pairs(WOKEN_AT_ONCE);
	th_expect_trace("", "16 coroutines read a socket each; another wrote to all of them");
	if (reads_done != WOKEN_AT_ONCE)
		th_fail("%d readers; %d got their byte", WOKEN_AT_ONCE, reads_done);
	if (last_wake_loop - loops_at_write > 2)
		th_fail("%d reads completed at once, and the hub went round %llu times to wake "
			"their coroutines; expected one loop (two at most)", WOKEN_AT_ONCE,
			(unsigned long long)(last_wake_loop - loops_at_write));
}
END_TEST

/* ---- Requests in flight are counted ------------------------------------ */

START_TEST(a_parked_reader_keeps_the_hub_waiting_for_its_completion)
{
	th_about("submit_and_park", "a request in flight must be counted in ur.in_flight: the hub "
		 "sleeps in the kernel only while something can still wake a coroutine, and "
		 "reports \"all coroutines are asleep\" otherwise");
	th_trace_start();
	open_hub(HUB_URING);
	memset(&reader, 0, sizeof reader);
	th_socket_pair(pair);
	co_spawn(read_once, NULL);
	co_spawn(write_hello_later, NULL);
	char report[2048];
	int result = run_capturing(report, sizeof report);
	close_pair();
	if (result != 0)
		th_fail("co_run() returned %d, saying every coroutine was asleep for good, while one "
			"waited for a read that another coroutine's write 10 ms later completed: the "
			"read in flight was not counted. It printed:\n%s", result, report);
	if (reader.got != 5)
		th_fail("the read returned %zd; expected the 5 bytes written", reader.got);
}
END_TEST

static struct co_event never;

static void read_then_wait_for_nothing(void *arg)
{
	(void)arg;
	char c;
	if (green_read(pair[0], &c, 1) == 1)
		th_note("read ");
	co_event_wait(&never, -1);
}

START_TEST(all_asleep_is_reported_once_the_reads_are_done)
{
	th_about("complete", "a completed request must be uncounted from ur.in_flight: otherwise "
		 "the hub believes a completion may still come, and sleeps in io_uring_enter for "
		 "ever instead of reporting the deadlock");
	th_trace_start();
	open_hub(HUB_URING);
	co_event_init(&never);
	th_socket_pair(pair);
	if (write(pair[1], "x", 1) != 1)
		th_fail("write: %s", strerror(errno));
	co_spawn(read_then_wait_for_nothing, NULL);
	char report[2048];
	int result = run_capturing(report, sizeof report);
	close_pair();
	th_expect_trace("read ", "a coroutine read a byte, then waited on an event nobody sets");
	if (result != -1 || strstr(report, "all coroutines are asleep") == NULL)
		th_fail("a coroutine read a byte, then waited on an event nobody sets: co_run() "
			"returned %d and printed \"%s\"; expected -1 and \"all coroutines are "
			"asleep\"", result, report);
}
END_TEST

/* ---- Buffer ownership -------------------------------------------------- */

/* A buffer the test can look at after the call that used it returned: what
 * the kernel writes into it later shows up here. */
static char shared[16];
static ssize_t late_got;
static char late[16];

static void fill_shared(void)
{
	memset(shared, '#', sizeof shared);
}

static bool shared_untouched(void)
{
	for (size_t i = 0; i < sizeof shared; i++)
		if (shared[i] != '#')
			return false;
	return true;
}

/* After the first read gave up: send "xyz", let the hub go round, and read
 * it with a new call. A read of the first call still in flight would take
 * the bytes into `shared`. */
static void send_and_read_again(void)
{
	fill_shared();
	if (write(pair[1], "xyz", 3) != 3)
		th_note("write failed ");
	co_sleep(20);
	late_got = green_read_until(pair[0], late, sizeof late, co_deadline_after(th_ms(1000)));
}

static void check_buffer_alone(const char *what)
{
	if (!shared_untouched())
		th_fail("%s; afterwards the caller filled its buffer with '#' and \"xyz\" was sent: "
			"the buffer now holds \"%.*s\". The kernel wrote into a buffer it no longer "
			"owned: the cut-short read was still in flight", what, (int)sizeof shared,
			shared);
	if (late_got != 3 || memcmp(late, "xyz", 3) != 0)
		th_fail("%s; then \"xyz\" was sent, and a new read returned %zd (\"%.*s\"); "
			"expected \"xyz\"", what, late_got, late_got > 0 ? (int)late_got : 0, late);
}

static void read_with_a_deadline(void *arg)
{
	(void)arg;
	reader.got = green_read_until(pair[0], shared, sizeof shared, co_deadline_after(10));
	reader.err = errno;
	if (reader.got < 0)
		send_and_read_again();
	stop_guard();
}

START_TEST(a_read_past_its_deadline_fails_with_etimedout)
{
	th_about("submit_and_park cancel_and_wait complete", "a read whose deadline passes must "
		 "cancel its request, wait for its completion (-ECANCELED), and fail with ETIMEDOUT");
	th_trace_start();
	open_hub(HUB_URING);
	memset(&reader, 0, sizeof reader);
	th_socket_pair(pair);
	co_spawn(read_with_a_deadline, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a silent socket with a deadline 10 ms away");
	if (reader.got != -1 || reader.err != ETIMEDOUT)
		th_fail("green_read_until() on a silent socket, deadline 10 ms away, returned %zd "
			"(%s); expected -1 with ETIMEDOUT", reader.got, strerror(reader.err));
}
END_TEST

START_TEST(a_read_past_its_deadline_leaves_its_buffer_alone)
{
	th_about("cancel_and_wait submit_and_park", "a read cut short by its deadline must not "
		 "return while its request is in flight: the kernel still owns the buffer, and "
		 "writes into it when data comes. Cancel the request, then wait for its "
		 "completion");
	th_trace_start();
	open_hub(HUB_URING);
	memset(&reader, 0, sizeof reader);
	late_got = 0;
	th_socket_pair(pair);
	co_spawn(read_with_a_deadline, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a silent socket with a deadline 10 ms away");
	if (reader.got != -1)
		th_fail("green_read_until() on a silent socket returned %zd; expected -1",
			reader.got);
	check_buffer_alone("green_read_until() returned -1 at its deadline");
}
END_TEST

static co_id victim;

static void read_until_cancelled(void *arg)
{
	(void)arg;
	reader.got = green_read(pair[0], shared, sizeof shared);
	reader.err = errno;
}

static void cancel_the_reader(void *arg)
{
	(void)arg;
	co_sleep(10);
	co_cancel(victim);
	co_join(victim);
	send_and_read_again();
	stop_guard();
}

START_TEST(a_cancelled_read_leaves_its_buffer_alone)
{
	th_about("cancel_and_wait submit_and_park", "a read woken by co_cancel() must not return "
		 "while its request is in flight: cancel the request, then wait for its completion, "
		 "with co_park_uninterruptible() (a plain co_park() returns at once once cancelled)");
	th_trace_start();
	open_hub(HUB_URING);
	memset(&reader, 0, sizeof reader);
	late_got = 0;
	th_socket_pair(pair);
	victim = co_spawn(read_until_cancelled, NULL);
	co_spawn(cancel_the_reader, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a silent socket; another cancelled it 10 ms later");
	if (reader.got != -1 || reader.err != ECANCELED)
		th_fail("a read cancelled with co_cancel() returned %zd (%s); expected -1 with "
			"ECANCELED", reader.got, strerror(reader.err));
	check_buffer_alone("a read woken by co_cancel() returned -1");
}
END_TEST

/* The buffer on the reader's own stack, as in the echo server: once the
 * reader ends, its stack is unmapped, and a request still in flight would
 * bring its completion back to a struct request that is gone. */
static void read_on_my_stack_with_a_deadline(void *arg)
{
	(void)arg;
	char buf[64];
	reader.got = green_read_until(pair[0], buf, sizeof buf, co_deadline_after(10));
	reader.err = errno;
}

static void write_once_the_reader_ended(void *arg)
{
	(void)arg;
	co_join(victim);
	fill_shared();
	if (write(pair[1], "xyz", 3) != 3)
		th_note("write failed ");
	co_sleep(20);
	late_got = green_read_until(pair[0], late, sizeof late, co_deadline_after(th_ms(1000)));
	stop_guard();
}

START_TEST(a_timed_out_reader_can_end_and_its_stack_go_away)
{
	th_about("cancel_and_wait", "a read cut short by its deadline must wait for its request's "
		 "completion: the request lives on the coroutine's stack, which is unmapped when "
		 "the coroutine ends. A completion that comes later makes reap() write to it");
	th_trace_start();
	open_hub(HUB_URING);
	memset(&reader, 0, sizeof reader);
	late_got = 0;
	th_socket_pair(pair);
	victim = co_spawn(read_on_my_stack_with_a_deadline, NULL);
	co_spawn(write_once_the_reader_ended, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a silent socket into its stack with a 10 ms "
			"deadline and ended; then another sent \"xyz\"");
	if (reader.got != -1 || reader.err != ETIMEDOUT)
		th_fail("green_read_until() returned %zd (%s); expected -1 with ETIMEDOUT",
			reader.got, strerror(reader.err));
	if (late_got != 3 || memcmp(late, "xyz", 3) != 0)
		th_fail("after the reader ended, \"xyz\" was sent and a new read returned %zd; "
			"expected the 3 bytes", late_got);
}
END_TEST

/* ---- Close with requests in flight -------------------------------------- */

static struct {
	ssize_t result;
	int err;
	ssize_t peer_got;
	int peer_err;
} closing;

static void close_it_then_look_at_the_peer(void *arg)
{
	(void)arg;
	co_sleep(10);
	green_close(pair[0]);
	co_sleep(10);
	char c;
	closing.peer_got = read(pair[1], &c, 1);
	closing.peer_err = errno;
	stop_guard();
}

static void read_until_closed(void *arg)
{
	(void)arg;
	closing.result = green_read(pair[0], shared, sizeof shared);
	closing.err = errno;
}

static void check_closed(const char *what)
{
	if (closing.result != -1 || closing.err != EBADF)
		th_fail("%s, then another coroutine closed the fd with green_close(): the call "
			"returned %zd (%s); expected -1 with EBADF", what, closing.result,
			closing.result < 0 ? strerror(closing.err) : "no error");
	if (closing.peer_got != 0)
		th_fail("%s, then the fd was closed with green_close(); 10 ms later the other end "
			"of the socket read %zd (%s) instead of the end of the stream (0): the "
			"request still in flight held the socket open", what, closing.peer_got,
			closing.peer_got < 0 ? strerror(closing.peer_err) : "a byte");
}

/* multishot: the io_uring hub reading sockets with multishot recvs
 * (hub_uring_multishot()). */
static void scenario_close_a_reader(enum hub_kind kind, bool multishot)
{
	th_trace_start();
	hub_uring_multishot(multishot);
	open_hub(kind);
	hub_uring_multishot(false);
	memset(&closing, 0, sizeof closing);
	th_socket_pair(pair);
	co_spawn(read_until_closed, NULL);
	co_spawn(close_it_then_look_at_the_peer, NULL);
	start_guard(500);
	run_all();
	close(pair[1]);
	th_expect_trace("", "a coroutine read a silent socket; another closed it 10 ms later");
	check_closed("a coroutine read a silent socket");
}

START_TEST(closing_an_fd_wakes_its_reader_with_ebadf_and_the_peer_sees_the_end)
{
	th_about("submit_and_park", "green_close() cancels the requests in flight on the fd "
		 "(hub_forget_fd()); their coroutines must then fail with EBADF, not ECANCELED: "
		 "req->closed says so");
	scenario_close_a_reader(HUB_URING, false);
}
END_TEST

START_TEST(with_multishot_recv_closing_wakes_the_reader_with_ebadf_and_the_peer_sees_the_end)
{
	th_about("submit_and_park complete", "with hub_uring_multishot(), green_close() must "
		 "cancel the socket's multishot recv: its reader fails with EBADF, and the other "
		 "end reads the end of the stream");
	scenario_close_a_reader(HUB_URING, true);
}
END_TEST

static void write_until_closed(void *arg)
{
	(void)arg;
	static char block[4096];
	/* Fill the socket's buffers, so that the next write must wait. */
	while (write(pair[0], block, sizeof block) > 0)
		continue;
	closing.result = green_write(pair[0], block, sizeof block);
	closing.err = errno;
}

START_TEST(closing_an_fd_wakes_its_writer_with_ebadf)
{
	th_about("submit_and_park", "green_close() cancels the requests in flight on the fd, the "
		 "write waiting for room included; its coroutine must then fail with EBADF");
	th_trace_start();
	open_hub(HUB_URING);
	memset(&closing, 0, sizeof closing);
	th_socket_pair(pair);
	co_spawn(write_until_closed, NULL);
	co_spawn(close_it_then_look_at_the_peer, NULL);
	start_guard(500);
	run_all();
	close(pair[1]);
	th_expect_trace("", "a coroutine wrote to a socket whose buffers were full; another "
			"closed it 10 ms later");
	if (closing.result != -1 || closing.err != EBADF)
		th_fail("a write waiting for room, its fd closed by another coroutine, returned %zd "
			"(%s); expected -1 with EBADF", closing.result,
			closing.result < 0 ? strerror(closing.err) : "no error");
}
END_TEST

/* ---- Timers left armed after their wait ---------------------------------
 * hub.c leaves a coroutine's timer in the heap when its wait ends early (the
 * next wait, with a later deadline, keeps it), and sorts out when it fires
 * whether anyone still waits for it. These run on both backends. */

static struct {
	ssize_t first, second;
	int err;
	char got[2];
} lazy;

static void read_with_a_deadline_then_without(void *arg)
{
	(void)arg;
	lazy.first = green_read_until(pair[0], &lazy.got[0], 1, co_deadline_after(th_ms(20)));
	lazy.second = green_read(pair[0], &lazy.got[1], 1);
	lazy.err = errno;
	stop_guard();
}

static void write_now_and_later(void *arg)
{
	(void)arg;
	if (write(pair[1], "a", 1) != 1)
		th_note("write failed ");
	co_sleep(th_ms(60));
	if (write(pair[1], "b", 1) != 1)
		th_note("write failed ");
}

static void scenario_timer_left_armed(enum hub_kind kind)
{
	th_trace_start();
	open_hub(kind);
	memset(&lazy, 0, sizeof lazy);
	th_socket_pair(pair);
	co_spawn(read_with_a_deadline_then_without, NULL);
	co_spawn(write_now_and_later, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a byte with a deadline 20 ms away, then read again "
			"without a deadline; the second byte came 60 ms later");
	if (lazy.first != 1 || lazy.second != 1 || memcmp(lazy.got, "ab", 2) != 0)
		th_fail("a read with a deadline 20 ms away got its byte at once (returned %zd); the "
			"next read, without a deadline, returned %zd (%s) instead of the byte sent 60 ms "
			"later: the first read's timer, left in the heap, woke a wait that had no "
			"deadline. When a timer fires, wake its coroutine only if it is parked with a "
			"deadline that has come (co->deadline)", lazy.first, lazy.second,
			lazy.second < 0 ? strerror(lazy.err) : "no error");
}

static void read_with_a_deadline_and_end(void *arg)
{
	(void)arg;
	char c;
	lazy.first = green_read_until(pair[0], &c, 1, co_deadline_after(th_ms(20)));
}

static void sleep_past_that_deadline(void *arg)
{
	(void)arg;
	co_sleep(th_ms(50));
	th_note("woke ");
	stop_guard();
}

/* Run after a reader parked: on epoll, a read that finds its byte there
 * already returns without waiting, and its timer is never armed. */
static void write_a_byte(void *arg)
{
	(void)arg;
	if (write(pair[1], "x", 1) != 1)
		th_note("write failed ");
}

static void scenario_ended_with_its_timer_armed(enum hub_kind kind)
{
	th_trace_start();
	open_hub(kind);
	memset(&lazy, 0, sizeof lazy);
	th_socket_pair(pair);
	co_spawn(read_with_a_deadline_and_end, NULL);
	co_spawn(write_a_byte, NULL);
	co_spawn(sleep_past_that_deadline, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("woke ", "a coroutine read a byte with a deadline 20 ms away and ended; "
			"another slept 50 ms, past that deadline (a crash here: the timer of the "
			"ended coroutine, on its unmapped stack, was still in the heap; "
			"hub_forget_co() must take it out)");
	if (lazy.first != 1)
		th_fail("a read of a socket that held a byte returned %zd; expected 1", lazy.first);
}

static void read_with_a_far_deadline_then_wait_for_nothing(void *arg)
{
	(void)arg;
	char c;
	if (green_read_until(pair[0], &c, 1, co_deadline_after(th_ms(5000))) == 1)
		th_note("read ");
	co_event_wait(&never, -1);
}

static void scenario_all_asleep_with_a_timer_left(enum hub_kind kind)
{
	th_trace_start();
	open_hub(kind);
	co_event_init(&never);
	th_socket_pair(pair);
	co_spawn(read_with_a_far_deadline_then_wait_for_nothing, NULL);
	co_spawn(write_a_byte, NULL);
	char report[2048];
	int result = run_capturing(report, sizeof report);
	close_pair();
	th_expect_trace("read ", "a coroutine read a byte with a deadline 5 s away, then waited "
			"on an event nobody sets");
	if (result != -1 || strstr(report, "all coroutines are asleep") == NULL)
		th_fail("a coroutine read a byte (its deadline 5 s away), then waited on an event "
			"nobody sets: co_run() returned %d and printed \"%s\"; expected -1 and \"all "
			"coroutines are asleep\". The read's timer, left in the heap, is no reason to "
			"wait: count the waits with a deadline, not the timers", result, report);
}

static void far_then_near_deadline(void *arg)
{
	(void)arg;
	lazy.first = green_read_until(pair[0], &lazy.got[0], 1, co_deadline_after(th_ms(5000)));
	lazy.second = green_read_until(pair[0], &lazy.got[1], 1, co_deadline_after(th_ms(20)));
	lazy.err = errno;
	stop_guard();
}

static void scenario_nearer_deadline(enum hub_kind kind)
{
	th_trace_start();
	open_hub(kind);
	memset(&lazy, 0, sizeof lazy);
	th_socket_pair(pair);
	co_spawn(far_then_near_deadline, NULL);
	co_spawn(write_a_byte, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a byte with a deadline 5 s away, then read a silent "
			"socket with a deadline 20 ms away");
	if (lazy.first != 1 || lazy.second != -1 || lazy.err != ETIMEDOUT)
		th_fail("a read with a deadline 5 s away got its byte (returned %zd); the next read, "
			"of a silent socket with a deadline 20 ms away, returned %zd (%s); expected -1 "
			"with ETIMEDOUT. A timer left armed for a later time than the new deadline "
			"must be armed again, earlier", lazy.first, lazy.second,
			lazy.second < 0 ? strerror(lazy.err) : "no error");
}

START_TEST(a_timer_left_from_a_finished_wait_never_wakes_a_later_one)
{
	th_about("", "a wait that ends before its deadline leaves its timer in the heap; when it "
		 "fires, it must wake nobody whose wait has no deadline");
	scenario_timer_left_armed(HUB_URING);
}
END_TEST

START_TEST(a_coroutine_that_ends_with_its_timer_armed_leaves_no_timer_behind)
{
	th_about("", "a coroutine's timer lives in its struct co, on its stack's mapping: when "
		 "it ends, its timer must leave the heap, armed or not");
	scenario_ended_with_its_timer_armed(HUB_URING);
}
END_TEST

START_TEST(all_asleep_is_reported_while_a_finished_wait_leaves_its_timer_armed)
{
	th_about("", "a timer left from a finished wait wakes nobody: it must not keep the hub "
		 "sleeping when every coroutine waits for something that cannot come");
	scenario_all_asleep_with_a_timer_left(HUB_URING);
}
END_TEST

START_TEST(a_nearer_deadline_after_a_farther_one_is_kept)
{
	th_about("", "a timer left armed by a finished wait may be due later than the next "
		 "wait's deadline: that wait must still end at its own deadline");
	scenario_nearer_deadline(HUB_URING);
}
END_TEST

START_TEST(on_epoll_a_nearer_deadline_after_a_farther_one_is_kept)
{
	th_about("", "the epoll backend shares hub.c's timers: the same rule");
	scenario_nearer_deadline(HUB_EPOLL);
}
END_TEST

START_TEST(on_epoll_a_timer_left_from_a_finished_wait_never_wakes_a_later_one)
{
	th_about("", "the epoll backend shares hub.c's timers: the same rule");
	scenario_timer_left_armed(HUB_EPOLL);
}
END_TEST

START_TEST(on_epoll_a_coroutine_that_ends_with_its_timer_armed_leaves_no_timer_behind)
{
	th_about("", "the epoll backend shares hub.c's timers: the same rule");
	scenario_ended_with_its_timer_armed(HUB_EPOLL);
}
END_TEST

START_TEST(on_epoll_all_asleep_is_reported_while_a_finished_wait_leaves_its_timer_armed)
{
	th_about("", "the epoll backend shares hub.c's timers: the same rule");
	scenario_all_asleep_with_a_timer_left(HUB_EPOLL);
}
END_TEST

/* ---- The same calls on the epoll backend -------------------------------- */

START_TEST(on_epoll_a_read_past_its_deadline_fails_with_etimedout)
{
	th_about("", "the epoll backend waits for readiness with a deadline, as in chapter 07");
	th_trace_start();
	open_hub(HUB_EPOLL);
	memset(&reader, 0, sizeof reader);
	late_got = 0;
	th_socket_pair(pair);
	co_spawn(read_with_a_deadline, NULL);
	start_guard(500);
	run_all();
	close_pair();
	th_expect_trace("", "a coroutine read a silent socket with a deadline 10 ms away");
	if (reader.got != -1 || reader.err != ETIMEDOUT)
		th_fail("green_read_until() on a silent socket returned %zd (%s); expected -1 with "
			"ETIMEDOUT", reader.got, strerror(reader.err));
	check_buffer_alone("green_read_until() returned -1 at its deadline");
}
END_TEST

START_TEST(on_epoll_closing_an_fd_wakes_its_reader_with_ebadf)
{
	th_about("", "the epoll backend wakes the waiters of a forgotten fd with EBADF");
	scenario_close_a_reader(HUB_EPOLL, false);
}
END_TEST

/* Why io_uring cannot be used here, or NULL when it can: the hub opened on
 * it and closed again, in this process, before any test forks. */
static const char *uring_unavailable(void)
{
	static char why[160];
	if (hub_open(HUB_URING) == 0) {
		hub_close();
		return NULL;
	}
	snprintf(why, sizeof why, "io_uring_setup: %s (a kernel before 6.1, qemu-user, "
		 "/proc/sys/kernel/io_uring_disabled above 0, or a seccomp profile)",
		 strerror(errno));
	return why;
}

int main(void)
{
	Suite *s = th_suite("io_uring hub");
	const char *why = uring_unavailable();
	bool listing = getenv("TH_LIST_TESTS") != NULL;
	if (why == NULL || listing) {
		/* Each test takes a few tens of milliseconds: one that still
		 * runs after a second has hung. */
		TCase *tc = th_tcase(s, "submit_and_complete", "submit_and_park complete");
		th_tcase_deadline(tc, 1);
		th_test(tc, a_read_completes_with_the_bytes_that_came);
		tc = th_tcase(s, "batching", "submit_and_park");
		th_tcase_deadline(tc, 1);
		th_test(tc, one_io_uring_enter_submits_the_whole_run_queue);
		th_test(tc, a_parked_reader_keeps_the_hub_waiting_for_its_completion);
		th_test(tc, closing_an_fd_wakes_its_reader_with_ebadf_and_the_peer_sees_the_end);
		th_test(tc, closing_an_fd_wakes_its_writer_with_ebadf);
		tc = th_tcase(s, "multishot", "submit_and_park complete");
		th_tcase_deadline(tc, 1);
		th_test(tc, with_multishot_recv_closing_wakes_the_reader_with_ebadf_and_the_peer_sees_the_end);
		tc = th_tcase(s, "reaping", "complete");
		th_tcase_deadline(tc, 1);
		th_test(tc, one_io_uring_enter_wakes_every_completed_request);
		th_test(tc, all_asleep_is_reported_once_the_reads_are_done);
		tc = th_tcase(s, "buffer_ownership", "submit_and_park cancel_and_wait complete");
		th_tcase_deadline(tc, 1);
		th_test(tc, a_read_past_its_deadline_fails_with_etimedout);
		th_test(tc, a_read_past_its_deadline_leaves_its_buffer_alone);
		th_test(tc, a_cancelled_read_leaves_its_buffer_alone);
		th_test(tc, a_timed_out_reader_can_end_and_its_stack_go_away);
		tc = th_tcase(s, "timers_left_armed", "");
		th_tcase_deadline(tc, 1);
		th_test(tc, a_timer_left_from_a_finished_wait_never_wakes_a_later_one);
		th_test(tc, a_coroutine_that_ends_with_its_timer_armed_leaves_no_timer_behind);
		th_test(tc, all_asleep_is_reported_while_a_finished_wait_leaves_its_timer_armed);
		th_test(tc, a_nearer_deadline_after_a_farther_one_is_kept);
	} else {
		fprintf(stderr, "test_uring: SKIPPED the 16 io_uring tests: %s\n", why);
	}
	TCase *tc = th_tcase(s, "epoll", "");
	th_tcase_deadline(tc, 1);
	th_test(tc, on_epoll_a_read_past_its_deadline_fails_with_etimedout);
	th_test(tc, on_epoll_closing_an_fd_wakes_its_reader_with_ebadf);
	th_test(tc, on_epoll_a_timer_left_from_a_finished_wait_never_wakes_a_later_one);
	th_test(tc, on_epoll_a_coroutine_that_ends_with_its_timer_armed_leaves_no_timer_behind);
	th_test(tc, on_epoll_all_asleep_is_reported_while_a_finished_wait_leaves_its_timer_armed);
	th_test(tc, on_epoll_a_nearer_deadline_after_a_farther_one_is_kept);
	return th_run(s);
}
