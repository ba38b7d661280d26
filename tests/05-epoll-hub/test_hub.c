/* Chapter 05's hub tests: timers in deadline order, sleep(0) as a yield,
 * join, coroutines parked on fds and woken by data (once per readiness),
 * by a close or by the peer leaving, one waiter per fd and direction, "all asleep" reported
 * instead of a hang, the dump, ten thousand sleepers, an idle hub that
 * sleeps in the kernel, the watchdog, and the server with ten thousand
 * clients at once. Assertions run on the main stack,
 * after co_run() returns. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "co.h"
#include "green.h"
#include "harness.h"
#include "hub.h"

static void run_all(void)
{
	if (co_run() != 0)
		th_fail("co_run() returned -1: the coroutines deadlocked (see stderr)");
}

/* A connected pair of non-blocking sockets. */
static void socket_pair(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
		th_fail("socketpair: %s", strerror(errno));
}

/* ---- Timers and sleep ---------------------------------------------------- */

static void sleep_and_note(void *arg)
{
	long ms = (long)(intptr_t)arg;
	co_sleep(ms);
	char text[16];
	snprintf(text, sizeof text, "%ld ", ms);
	th_note("%s", text);
}

START_TEST(sleepers_wake_in_deadline_order)
{
	th_about("sift_up poll", "the timer heap does not keep the earliest deadline at its "
		 "root, or the hub does not wake expired timers");
	th_trace_start();
	static const long order[] = { 40, 10, 30, 0, 20, 50, 5 };
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		co_spawn(sleep_and_note, (void *)(intptr_t)order[i]);
	run_all();
	th_expect_trace("0 5 10 20 30 40 50 ", "seven coroutines slept 40, 10, 30, 0, 20, 50, 5 ms");
}
END_TEST

static void yield_between(void *arg)
{
	const char *name = arg;
	for (int i = 0; i < 3; i++) {
		th_note("%s", name);
		co_sleep(0);
	}
}

START_TEST(sleep_zero_lets_the_others_run)
{
	th_about("", "co_sleep(0) must put the coroutine at the back of the run queue");
	th_trace_start();
	co_spawn(yield_between, "a");
	co_spawn(yield_between, "b");
	run_all();
	th_expect_trace("ababab", "two coroutines each noted a letter and slept 0, three times");
}
END_TEST

/* ---- Join ----------------------------------------------------------------- */

static void short_task(void *arg)
{
	(void)arg;
	co_sleep(20);
	th_note("task ");
}

static void joiner(void *arg)
{
	co_id task = *(co_id *)arg;
	if (co_join(task) == 0)
		th_note("joined ");
	if (co_join(task) == 0)
		th_note("again ");	/* it has ended: at once */
	if (co_join(co_self()) < 0 && errno == EDEADLK)
		th_note("self");
}

START_TEST(join_waits_for_the_end_and_then_returns_at_once)
{
	th_about("poll", "co_join() must park until the coroutine ends");
	th_trace_start();
	static co_id task;
	task = co_spawn(short_task, NULL);
	co_spawn(joiner, &task);
	run_all();
	th_expect_trace("task joined again self", "a coroutine joined one that slept 20 ms, twice, "
		     "then itself");
}
END_TEST

/* ---- Waiting on fds ------------------------------------------------------- */

static int pair[2];

static void reader(void *arg)
{
	(void)arg;
	char buf[16] = "";
	ssize_t got = green_read(pair[0], buf, sizeof buf - 1);
	th_note("%s", got > 0 ? buf : "read failed");
}

static void writer_later(void *arg)
{
	(void)arg;
	th_note("sleep ");
	co_sleep(30);
	if (green_write(pair[1], "data", 4) != 4)
		th_note("write failed ");
}

START_TEST(reader_parks_until_data_arrives)
{
	th_about("green_read wait_fd poll", "green_read() must park on EAGAIN and be woken "
		 "when the fd becomes readable");
	th_trace_start();
	socket_pair(pair);
	co_spawn(reader, NULL);
	co_spawn(writer_later, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("sleep data", "a reader waited while a writer slept 30 ms and wrote");
}
END_TEST

static void second_reader(void *arg)
{
	(void)arg;
	char c;
	if (green_read(pair[0], &c, 1) < 0 && errno == EBUSY)
		th_note("busy ");
	green_write(pair[1], "x", 1);	/* let the first one finish */
}

START_TEST(second_waiter_on_the_same_fd_gets_ebusy)
{
	th_about("wait_fd", "two coroutines waiting to read one fd: one of them would never be "
		 "woken, so the second must get EBUSY at once");
	th_trace_start();
	socket_pair(pair);
	co_spawn(reader, NULL);
	co_spawn(second_reader, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("busy x", "a second reader of the same fd");
}
END_TEST

static void closer(void *arg)
{
	(void)arg;
	co_sleep(10);
	green_close(pair[0]);
	th_note("closed ");
}

static void reader_of_closed(void *arg)
{
	(void)arg;
	char c;
	if (green_read(pair[0], &c, 1) < 0 && errno == EBADF)
		th_note("woken with EBADF");
}

START_TEST(closing_an_fd_wakes_its_waiter)
{
	th_about("wait_fd poll", "a coroutine parked on an fd that another coroutine closes must "
		 "be woken with EBADF, not left parked");
	th_trace_start();
	socket_pair(pair);
	co_spawn(reader_of_closed, NULL);
	co_spawn(closer, NULL);
	run_all();
	green_close(pair[1]);
	th_expect_trace("closed woken with EBADF", "a reader whose fd was closed");
}
END_TEST

static void reader_of_gone_peer(void *arg)
{
	(void)arg;
	char c;
	if (green_read(pair[0], &c, 1) == 0)
		th_note("end of file");
}

static void peer_leaves(void *arg)
{
	(void)arg;
	co_sleep(10);
	green_close(pair[1]);
}

START_TEST(peer_leaving_wakes_the_reader)
{
	th_about("green_read wait_fd poll", "when the peer closes, the parked reader must wake "
		 "and read end of file");
	th_trace_start();
	socket_pair(pair);
	co_spawn(reader_of_gone_peer, NULL);
	co_spawn(peer_leaves, NULL);
	run_all();
	green_close(pair[0]);
	th_expect_trace("end of file", "a reader whose peer closed");
}
END_TEST

static int wakes;

/* Waits with hub_wait_fd() itself, so that each wake can be counted, and
 * drains the socket after each. */
static void counting_reader(void *arg)
{
	(void)arg;
	for (;;) {
		if (hub_wait_fd(pair[0], HUB_READ, -1) < 0) {
			th_note("wait failed ");
			return;
		}
		wakes++;
		char buf[16] = "";
		ssize_t got = read(pair[0], buf, sizeof buf - 1);
		if (got <= 0) {
			th_note("%s", got == 0 ? "eof" : "read failed");
			return;
		}
		th_note("%s", buf);
	}
}

static void three_writes(void *arg)
{
	(void)arg;
	green_write(pair[1], "a", 1);
	co_sleep(5);
	green_write(pair[1], "b", 1);
	co_sleep(5);
	green_close(pair[1]);
}

START_TEST(a_parked_reader_wakes_once_per_readiness)
{
	th_about("wait_fd poll", "a reader that drains its socket after every wake must be woken "
		 "once for each time data or the end of file arrives: not twice, not never");
	th_trace_start();
	wakes = 0;
	socket_pair(pair);
	co_spawn(counting_reader, NULL);
	co_spawn(three_writes, NULL);
	run_all();
	green_close(pair[0]);
	th_expect_trace("abeof", "a reader woken by two writes and a close");
	if (wakes != 3)
		th_fail("the reader was woken %d times for 2 writes and a close; expected 3", wakes);
}
END_TEST

/* ---- All asleep, and the dump --------------------------------------------- */

static co_id first_id, second_id;

static void join_second(void *arg)
{
	(void)arg;
	co_join(second_id);
}

static void join_first(void *arg)
{
	(void)arg;
	co_join(first_id);
}

/* Run fn with stderr going to a file, and return what it wrote. */
static const char *capture_stderr(int (*fn)(void), int *result)
{
	static char text[4096];
	FILE *file = tmpfile();
	if (file == NULL)
		th_fail("tmpfile: %s", strerror(errno));
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(file), STDERR_FILENO);
	*result = fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(file);
	size_t len = fread(text, 1, sizeof text - 1, file);
	text[len] = '\0';
	fclose(file);
	return text;
}

START_TEST(all_asleep_is_reported_not_a_hang)
{
	th_about("poll", "when nothing can ever wake the waiting coroutines (no fd, no timer), "
		 "co_run() must say so and return -1 instead of sleeping for ever");
	first_id = co_spawn(join_second, NULL);
	second_id = co_spawn(join_first, NULL);
	int result;
	const char *err = capture_stderr(co_run, &result);
	/* Unwind them, so that the next test (in CK_FORK=no mode, in this same
	 * process) starts with no coroutine left over. */
	co_cancel_all();
	co_run();
	if (result != -1 || strstr(err, "all coroutines are asleep") == NULL ||
	    strstr(err, "join #") == NULL)
		th_fail("two coroutines joined each other; expected co_run() to return -1 and "
			"print \"all coroutines are asleep\" with their joins; it returned %d and "
			"printed:\n%s", result, err);
}
END_TEST

static char dump[4096];

static void dumper(void *arg)
{
	(void)arg;
	co_sleep(5);	/* let the others park first */
	FILE *out = fmemopen(dump, sizeof dump, "w");
	if (out != NULL) {
		co_dump(out);
		fclose(out);
	}
	green_write(pair[1], "x", 1);	/* wake the reader */
}

static void named_sleeper(void *arg)
{
	(void)arg;
	co_set_name("sleeper");
	co_sleep(50);
}

START_TEST(dump_lists_coroutines_and_what_they_wait_for)
{
	th_about("", "co_dump() should list every coroutine with its state and its wait");
	socket_pair(pair);
	th_trace_start();
	co_spawn(reader, NULL);
	co_spawn(named_sleeper, NULL);
	co_spawn(dumper, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	char read_wait[32];
	snprintf(read_wait, sizeof read_wait, "read fd %d", pair[0]);
	if (strstr(dump, "3 coroutines") == NULL || strstr(dump, read_wait) == NULL ||
	    strstr(dump, "sleeper") == NULL || strstr(dump, "sleep, due in") == NULL ||
	    strstr(dump, "running") == NULL)
		th_fail("expected the dump to show 3 coroutines: one waiting to \"%s\", one named "
			"\"sleeper\" in \"sleep, due in ...\", and the running one; it was:\n%s",
			read_wait, dump);
}
END_TEST

/* ---- Many, and idle ------------------------------------------------------- */

static long woken;

static void sleep_a_while(void *arg)
{
	long ms = (long)(intptr_t)arg;
	if (co_sleep(ms) == 0)
		woken++;
}

START_TEST(ten_thousand_coroutines_sleep_and_wake)
{
	th_about("sift_up poll", "the timer heap or the hub loses sleepers");
	enum { MANY = 10000 };
	woken = 0;
	for (long i = 0; i < MANY; i++)
		if (co_spawn(sleep_a_while, (void *)(intptr_t)(1 + (i * 7919) % 50)) == 0)
			th_fail("co_spawn failed at coroutine %ld: %s", i, strerror(errno));
	run_all();
	if (woken != MANY || co_count() != 0)
		th_fail("%d coroutines slept 1-50 ms; %ld woke, %zu are left", MANY, woken,
			co_count());
}
END_TEST

static uint64_t loops_while_idle;

static void sleep_one_second(void *arg)
{
	(void)arg;
	uint64_t before = hub_loops();
	co_sleep(1000);
	loops_while_idle = hub_loops() - before;
}

START_TEST(idle_hub_sleeps_in_the_kernel)
{
	th_about("poll", "with one coroutine sleeping for a second and nothing else to do, the "
		 "hub should wait in epoll_wait with the timer's timeout, not loop");
	co_spawn(sleep_one_second, NULL);
	run_all();
	if (loops_while_idle > 5)
		th_fail("the hub went round its loop %llu times while the only coroutine slept "
			"for a second; a hub that sleeps in the kernel needs one or two",
			(unsigned long long)loops_while_idle);
}
END_TEST

/* ---- The watchdog --------------------------------------------------------- */

static void hog(void *arg)
{
	(void)arg;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do	/* computing, never waiting: everyone else is stuck */
		clock_gettime(CLOCK_MONOTONIC, &now);
	while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < 400);
}

START_TEST(watchdog_names_a_coroutine_that_never_waits)
{
	th_about("", "the watchdog thread should report a coroutine that runs longer than its "
		 "threshold without waiting");
	FILE *out = tmpfile();
	if (out == NULL || co_watchdog(100, out) < 0)
		th_fail("cannot start the watchdog: %s", strerror(errno));
	co_id id = co_spawn(hog, NULL);
	run_all();
	char text[512] = "";
	rewind(out);
	size_t len = fread(text, 1, sizeof text - 1, out);
	text[len] = '\0';
	char expected[64];
	snprintf(expected, sizeof expected, "coroutine #%llu has run for", (unsigned long long)id);
	if (strstr(text, expected) == NULL)
		th_fail("a coroutine computed for 400 ms with the watchdog at 100 ms; expected "
			"\"%s ...\" from the watchdog, got:\n%s", expected, text);
}
END_TEST

/* ---- The server, with ten thousand clients -------------------------------- */

START_TEST(ten_thousand_clients_are_served_at_once)
{
	th_about("green_read wait_fd poll", "one thread must hold every connection open and "
		 "serve each one; the hub wakes only the coroutines whose sockets are ready");
	/* Each connection is a descriptor in this process and one in the server
	 * (which inherits the limit): ask for as many as the hard limit allows. */
	long clients = th_raise_fd_limit(10000);
	struct th_server *server = th_start(NULL);
	static const char msg[] = "one of ten thousand";
	th_echo_many(server, (size_t)clients, msg, sizeof msg - 1, 0, 30000);
}
END_TEST

static Suite *hub_suite(void)
{
	Suite *s = suite_create("05-epoll-hub");
	TCase *tc = th_tcase(s, "timers", "sift_up poll");
	th_tcase_deadline(tc, 10);
	th_test(tc, sleepers_wake_in_deadline_order);
	th_test(tc, ten_thousand_coroutines_sleep_and_wake);

	tc = th_tcase(s, "fds", "green_read wait_fd poll");
	th_test(tc, reader_parks_until_data_arrives);
	th_test(tc, second_waiter_on_the_same_fd_gets_ebusy);
	th_test(tc, closing_an_fd_wakes_its_waiter);
	th_test(tc, peer_leaving_wakes_the_reader);
	th_test(tc, a_parked_reader_wakes_once_per_readiness);

	tc = th_tcase(s, "scheduler", "poll");
	th_tcase_deadline(tc, 10);
	th_test(tc, join_waits_for_the_end_and_then_returns_at_once);
	th_test(tc, all_asleep_is_reported_not_a_hang);
	th_test(tc, idle_hub_sleeps_in_the_kernel);

	tc = th_tcase(s, "server", "green_read wait_fd poll");
	th_tcase_deadline(tc, 15);
	th_test(tc, ten_thousand_clients_are_served_at_once);

	tc = th_tcase(s, "inspection", "");
	th_test(tc, sleep_zero_lets_the_others_run);
	th_test(tc, dump_lists_coroutines_and_what_they_wait_for);
	/* The watchdog thread outlives its test: it needs the test's own
	 * process, Check's fork mode (make memcheck runs without it). */
	const char *fork_mode = getenv("CK_FORK");
	if (fork_mode == NULL || strcmp(fork_mode, "no") != 0)
		th_test(tc, watchdog_names_a_coroutine_that_never_waits);
	return s;
}

int main(void)
{
	return th_run(hub_suite());
}
