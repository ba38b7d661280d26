/* Chapter 06: monkey patching. Chapter 02's thread-per-connection server,
 * built from its own unchanged source, runs on green threads under
 * LD_PRELOAD; chapter 01's patched server stays serial; small programs
 * written for kernel threads keep their meaning on green ones; and what
 * cannot be patched is shown not to be. */
#define _GNU_SOURCE

#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum {
	DEMO_TIMEOUT_MS = 3000,         /* a demo that should end ends well within this */
	HANG_CHECK_MS = 1500,           /* a demo that should hang is given this long */
	SILENCE_MS = 300,
};

/* ---- Helpers ------------------------------------------------------------------- */

/* Run program (patch_demo or patch_rules) with one argument; returns its
 * exit status, -1 if it was still running after timeout_ms. */
static int run_demo(const char *program, const char *demo, int timeout_ms, char *out, size_t size)
{
	const char *args[] = { demo, NULL };
	struct th_launch launch = { .server = th_build_path(program), .args = args };
	return th_run_program(&launch, timeout_ms, out, size);
}

/* What a demo's output says about the likely cause, in terms of the TODOs;
 * "" when it says nothing special. */
static const char *explain(const char *out)
{
	if (strstr(out, "pthread_mutex_unlock: Operation not permitted") != NULL)
		return "\n  pthread_mutex_unlock failed with EPERM: the thread unlocking was not the "
		       "mutex's owner. A pthread_mutex_lock that returned 0 must have made its caller "
		       "the owner (gm->owner = co_self(), or the unlocking thread's hand-over), and "
		       "pthread_cond_wait must return holding the mutex again.";
	if (strstr(out, "Function not implemented") != NULL)
		return "\n  ENOSYS (Function not implemented): a TODO still returns its stub's error.";
	if (strstr(out, "all coroutines are asleep") != NULL)
		return "\n  Every green thread was parked, waiting for something that can no longer "
		       "happen: a wake-up was lost, or a thread waits for itself.";
	return "";
}

/* How a demo that did not end well ended. */
static void describe_end(int status, char *text, size_t size)
{
	if (status < 0)
		snprintf(text, size, "it was still running (a green thread never woke)");
	else if (status > 128)
		snprintf(text, size, "it was killed by signal %d (%s)", status - 128,
			 strsignal(status - 128));
	else
		snprintf(text, size, "it exited with status %d", status);
}

/* The program's demo must print every line in lines and end with status 0;
 * what it printed goes to out, if not NULL (4096 bytes). */
static void expect_program(const char *program, const char *demo, const char *const *lines,
			   char *printed)
{
	char out[4096], how[128];
	int status = run_demo(program, demo, DEMO_TIMEOUT_MS, out, sizeof out);
	describe_end(status, how, sizeof how);
	const char *missing = NULL;
	for (int i = 0; lines[i] != NULL && missing == NULL; i++)
		if (strstr(out, lines[i]) == NULL)
			missing = lines[i];
	if (missing != NULL && status != 0)
		th_fail("%s %s should print \"%s\" and end with status 0 within %d ms, but %s first. "
			"It printed:\n%s%s", program, demo, missing, th_ms(DEMO_TIMEOUT_MS), how, out,
			explain(out));
	if (missing != NULL)
		th_fail("%s %s should print \"%s\", but it printed:\n%s%s", program, demo, missing,
			out, explain(out));
	if (status != 0)
		th_fail("%s %s should end with status 0 within %d ms, but %s. It printed:\n%s%s",
			program, demo, th_ms(DEMO_TIMEOUT_MS), how, out, explain(out));
	if (printed != NULL)
		strcpy(printed, out);
}

static void expect_demo(const char *demo, const char *const *lines)
{
	expect_program("patch_demo", demo, lines, NULL);
}

/* The demo must still be running after HANG_CHECK_MS: it hangs. */
static void expect_demo_hangs(const char *demo, const char *why)
{
	char out[4096];
	int status = run_demo("patch_demo", demo, HANG_CHECK_MS, out, sizeof out);
	if (status >= 0)
		th_fail("patch_demo %s should hang, because %s; but it ended (status %d) and printed:\n%s",
			demo, why, status, out);
}

/* How many kernel threads the process has: the entries of /proc/PID/task. */
static long kernel_threads(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		th_fail("opendir %s: %s (has the server exited?)", path, strerror(errno));
	long n = 0;
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL)
		n += entry->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* Chapter 02's server, not patched at build time, under LD_PRELOAD. */
static struct th_server *start_preloaded(bool short_io)
{
	struct th_launch launch = {
		.server = th_build_path("threads_server"),
		.preload = th_build_path("libgreen.so"),
		.short_io = short_io,
	};
	return th_start(&launch);
}

/* ---- Chapter 02's server on green threads ---------------------------------------- */

START_TEST(serves_ten_thousand_clients_on_one_thread)
{
	th_about("patch_read spawn_thread start_main", "under LD_PRELOAD=libgreen.so, chapter 02's "
		 "pthread_create must start a green thread, not a kernel thread, and its blocking "
		 "read must park that green thread");
	/* Each connection is a descriptor here and one in the server (which
	 * inherits the limit): ask for as many as the hard limit allows. */
	long clients = th_raise_fd_limit(10000);
	struct th_server *server = start_preloaded(false);
	int *fds = calloc((size_t)clients, sizeof *fds);
	struct th_exchange *ex = calloc((size_t)clients, sizeof *ex);
	struct th_reply *replies = calloc((size_t)clients, sizeof *replies);
	if (fds == NULL || ex == NULL || replies == NULL)
		th_fail("out of memory");
	static const char msg[] = "one of ten thousand";
	/* After the first hundred, and again after all of them: one echo from
	 * the last one connected (then the server has accepted every client
	 * before it, and started a handler "thread" for each), and a count of
	 * the kernel threads. The first look fails fast a server that starts
	 * kernel threads, before it has started ten thousand. */
	long looks[] = { clients < 100 ? clients : 100, clients };
	long connected = 0;
	for (size_t look = 0; look < sizeof looks / sizeof looks[0]; look++) {
		for (; connected < looks[look]; connected++) {
			fds[connected] = th_connect(server);
			ex[connected] = (struct th_exchange){ .send = msg, .send_len = sizeof msg - 1,
							      .want = sizeof msg - 1, .timeout_ms = 30000 };
		}
		long last = connected - 1;
		th_exchange_many(&fds[last], &ex[last], &replies[last], 1);
		th_check_echo(msg, sizeof msg - 1, &replies[last]);
		th_reply_free(&replies[last]);
		long threads = kernel_threads(server->pid);
		if (threads != 1)
			th_fail("with %ld clients connected, chapter 02's server under LD_PRELOAD has "
				"%ld kernel threads in /proc/%d/task; on green threads it should have "
				"exactly one", connected, threads, (int)server->pid);
	}
	/* Everyone else, the hundredth's second echo included. */
	th_exchange_many(fds, ex, replies, (size_t)clients - 1);
	for (long i = 0; i < clients; i++) {
		if (i < clients - 1) {
			th_check_echo(msg, sizeof msg - 1, &replies[i]);
			th_reply_free(&replies[i]);
		}
		th_close(fds[i]);
	}
	free(fds);
	free(ex);
	free(replies);
}
END_TEST

START_TEST(preloaded_server_survives_short_reads_and_writes)
{
	th_about("patch_read spawn_thread start_main", "with libgreen.so and the short-I/O shim "
		 "both preloaded, chapter 02's server runs on green threads, and the patched read "
		 "must hand back whatever the shim lets through, and EINTR as is");
	struct th_server *server = start_preloaded(true);
	enum { SIZE = 64 * 1024 };
	unsigned char *data = th_payload(SIZE, 6);
	int fd = th_connect(server);
	th_expect_echo(fd, data, SIZE);
	th_close(fd);
	free(data);
}
END_TEST

START_TEST(patched_serial_server_still_serves_one_client_at_a_time)
{
	th_about("patch_read", "patching adds no concurrency where the program has none: chapter "
		 "01's server, patched, must still make the second client wait, and its read must "
		 "wait for the client instead of failing with EAGAIN");
	struct th_launch launch = { .server = th_build_path("serial_server") };
	struct th_server *server = th_start(&launch);
	int first = th_connect(server);
	th_expect_echo(first, "first", 5);

	int second = th_connect(server);
	static const char waiting[] = "second";
	struct th_exchange ex = { .send = waiting, .send_len = strlen(waiting) };
	struct th_reply reply;
	th_exchange(second, &ex, &reply);
	th_reply_free(&reply);
	th_expect_silence(second, th_ms(SILENCE_MS), "chapter 01's server reads from its one client "
			  "until that client leaves, green or not");
	th_close(first);

	ex = (struct th_exchange){ .want = strlen(waiting) };
	th_exchange(second, &ex, &reply);
	th_check_echo(waiting, strlen(waiting), &reply);
	th_reply_free(&reply);
	th_close(second);
}
END_TEST

/* ---- What the program sees ---------------------------------------------------------- */

START_TEST(getfl_still_shows_a_blocking_socket)
{
	th_about("fcntl_flags", "fcntl(F_GETFL) must hide the O_NONBLOCK that the patch set");
	static const char *const lines[] = { "socket: blocking", "pipe: blocking", NULL };
	expect_demo("fcntl", lines);
}
END_TEST

START_TEST(program_asking_for_nonblock_gets_eagain)
{
	th_about("fcntl_flags patch_read", "a program that sets O_NONBLOCK itself must see it, and "
		 "get EAGAIN from a read with nothing to read, instead of parking: F_SETFL records "
		 "the fd as FD_NONBLOCK, and the patched read gives such an fd the real read");
	static const char *const lines[] = {
		"pipe after F_SETFL O_NONBLOCK: O_NONBLOCK",
		"read on the empty pipe: Resource temporarily unavailable", NULL,
	};
	expect_demo("fcntl", lines);
}
END_TEST

START_TEST(setfl_with_the_flags_getfl_gave_keeps_the_fd_nonblocking)
{
	th_about("fcntl_flags", "fcntl(fd, F_SETFL, fcntl(fd, F_GETFL)) sets the flags the "
		 "program saw, without O_NONBLOCK: the patched F_SETFL must keep the fd "
		 "non-blocking in the kernel all the same, or the next read blocks the hub");
	static const char *const lines[] = {
		"pipe after F_SETFL with the flags F_GETFL gave: blocking",
		"the kernel sees: O_NONBLOCK", NULL,
	};
	expect_demo("setfl", lines);
}
END_TEST

START_TEST(clearing_nonblock_makes_reads_park_again)
{
	th_about("fcntl_flags patch_read", "a program that sets O_NONBLOCK and clears it again "
		 "wants blocking reads back: F_SETFL must record the fd as FD_GREEN again, so that "
		 "its read parks until a green writer has written, instead of failing with EAGAIN");
	static const char *const lines[] = {
		"pipe after setting O_NONBLOCK and clearing it: blocking",
		"read 1 byte from a green writer after clearing O_NONBLOCK", NULL,
	};
	expect_demo("setfl", lines);
}
END_TEST

START_TEST(patched_read_waits_for_a_green_writer)
{
	th_about("patch_read", "read() on an empty pipe must park the reader until another green "
		 "thread has written");
	static const char *const lines[] = { "read 1 byte from a green writer", NULL };
	expect_demo("read", lines);
}
END_TEST

/* ---- Threads, mutexes and conditions --------------------------------------------------- */

START_TEST(join_returns_the_thread_value)
{
	th_about("spawn_thread start_main", "pthread_join must wait for the green thread and give "
		 "back what it returned or passed to pthread_exit; every thread must be on the "
		 "threads list (prev and next linked), so that it is found in any order");
	static const char *const lines[] = {
		"joined a thread that returned 42",
		"joined a thread that called pthread_exit(7)",
		"joined three threads out of order: 2 3 1",
		"a detached thread ran",
		"a thread ran on after main called pthread_exit", NULL,
	};
	expect_demo("threads", lines);
}
END_TEST

START_TEST(mutex_keeps_a_counter_exact_across_parks)
{
	th_about("mutex_lock", "20 green threads each add 1 to a counter 10 times, parking between "
		 "reading it and writing it back, under a mutex: no increment may be lost");
	static const char *const lines[] = { "counter 200 of 200", NULL };
	expect_demo("mutex", lines);
}
END_TEST

START_TEST(relocking_an_owned_mutex_fails_with_edeadlk)
{
	th_about("mutex_lock", "a green mutex checks errors: its owner locking it again must get "
		 "EDEADLK, not park waiting for itself");
	static const char *const lines[] = { "its owner locking it again: Resource deadlock avoided",
					     NULL };
	expect_demo("mutex", lines);
}
END_TEST

START_TEST(mutex_goes_to_its_waiters_first_come_first_served)
{
	th_about("mutex_lock", "threads that queue for a held mutex must get it in the order they "
		 "asked: enqueue() at the back of gm->waiting, which unlock hands over from the front");
	static const char *const lines[] = { "took it in the order abc", NULL };
	expect_demo("mutex", lines);
}
END_TEST

START_TEST(cond_wakes_a_waiter_and_times_out)
{
	th_about("cond_wait", "pthread_cond_wait must park until signalled, and "
		 "pthread_cond_timedwait with nobody signalling must end with ETIMEDOUT");
	static const char *const lines[] = {
		"woken with the flag set",
		"timed wait with nobody signalling: Connection timed out", NULL,
	};
	expect_demo("cond", lines);
}
END_TEST

START_TEST(timed_out_wait_returns_holding_the_mutex)
{
	th_about("cond_wait", "pthread_cond_timedwait returns holding the mutex, timed out or not: "
		 "mutex_lock() it back on every path");
	static const char *const lines[] = { "the timed wait returned holding the mutex", NULL };
	expect_demo("cond", lines);
}
END_TEST

START_TEST(timed_out_waiter_leaves_the_queue)
{
	th_about("cond_wait", "a waiter whose deadline passed must take itself off the "
		 "condition's queue (unqueue): it lives on its thread's stack, and a later signal "
		 "would otherwise wake what is no longer there");
	static const char *const lines[] = { "a signal with nobody waiting is lost", NULL };
	expect_demo("cond", lines);
}
END_TEST

START_TEST(timed_wait_signalled_in_time_succeeds)
{
	th_about("cond_wait", "a timed wait woken by a signal before its deadline returns 0, not "
		 "ETIMEDOUT: hub_sleep_until() returns 0 either way, and w.woken tells them apart");
	static const char *const lines[] = { "timed wait, signalled in time: Success", NULL };
	expect_demo("cond", lines);
}
END_TEST

START_TEST(signal_wakes_one_waiter_and_broadcast_wakes_both)
{
	th_about("cond_wait", "two threads waiting on one condition at once must both be queued: "
		 "each signal wakes one of them, a broadcast wakes both (the waiters loop, as "
		 "every caller must, so a spurious wake-up would do no harm)");
	static const char *const lines[] = {
		"one signal, two waiters: 1 took a ticket",
		"a second signal: 2 took a ticket in all",
		"one broadcast, two waiters: 2 went through", NULL,
	};
	expect_demo("cond", lines);
}
END_TEST

START_TEST(cond_wait_without_the_mutex_fails_with_eperm)
{
	th_about("cond_wait", "pthread_cond_wait by a thread that does not own the mutex must fail "
		 "with EPERM at once, not unlock someone else's mutex and park");
	static const char *const lines[] = { "waiting without holding the mutex: Operation not "
					     "permitted", NULL };
	expect_demo("cond", lines);
}
END_TEST

/* ---- What cannot be patched ------------------------------------------------------------ */

START_TEST(raw_syscall_sees_the_hidden_nonblocking_flag)
{
	th_about("", "syscall(SYS_read) goes to the kernel without passing the patch: on a pipe the "
		 "patch made non-blocking it fails with EAGAIN, which a blocking read never does");
	static const char *const lines[] = {
		"syscall(SYS_read) on the empty pipe: Resource temporarily unavailable", NULL,
	};
	expect_demo("fcntl", lines);
}
END_TEST

START_TEST(raw_syscall_read_blocks_every_green_thread)
{
	th_about("start_main spawn_thread", "syscall(SYS_read) on a blocking pipe blocks the one kernel thread, so the "
		 "green thread that would write to the pipe never runs");
	expect_demo_hangs("syscall", "the raw read blocks the hub's only kernel thread");
}
END_TEST

START_TEST(spinning_thread_starves_the_others)
{
	th_about("start_main spawn_thread", "a loop that never calls a patched function never gives the hub back");
	expect_demo_hangs("spin", "the spinning green thread never yields to the one that would "
			  "stop it");
}
END_TEST

START_TEST(yielding_spinner_lets_the_others_run)
{
	th_about("start_main spawn_thread", "usleep(0) in a loop is gevent.sleep(0): the others run once each time");
	static const char *const lines[] = { "the spinner was stopped by another green thread", NULL };
	expect_demo("yield", lines);
}
END_TEST

START_TEST(offload_lets_others_run_during_a_blocking_call)
{
	th_about("start_main spawn_thread", "offload_run() must run the blocking call on a worker thread and park the "
		 "caller, so that the green thread that unblocks the call can run");
	static const char *const lines[] = {
		"kernel threads before: 1",
		"the worker's blocking read got the byte a green thread wrote meanwhile", NULL,
	};
	expect_demo("offload", lines);
}
END_TEST

START_TEST(offload_resolves_a_name)
{
	th_about("start_main spawn_thread", "offload_getaddrinfo() must return getaddrinfo's answer from a worker thread");
	static const char *const lines[] = { "localhost is 127.0.0.1", NULL };
	expect_demo("resolve", lines);
}
END_TEST

/* ---- What else programs of kernel threads rely on (patch_rules) -------------------- */

/* The number printed right after `after` in the output, or -1. */
static long number_after(const char *out, const char *after)
{
	const char *at = strstr(out, after);
	return at != NULL ? strtol(at + strlen(after), NULL, 10) : -1;
}

START_TEST(threads_in_accept_on_one_socket_take_turns)
{
	th_about("start_main spawn_thread", "the hub lets one green thread wait per fd and "
		 "direction (EBUSY for a second); kernel threads may all block in accept() on one "
		 "socket, so the patch must queue the others behind the one waiting");
	static const char *const lines[] = { "accepted 3 clients", NULL };
	expect_program("patch_rules", "accept", lines, NULL);
}
END_TEST

START_TEST(a_blocking_write_writes_everything)
{
	th_about("start_main spawn_thread", "a write() to an fd the program thinks blocks returns "
		 "once every byte is out: the patch must go on writing what the first call left");
	static const char *const lines[] = { "returned 1048576", NULL };
	expect_program("patch_rules", "write", lines, NULL);
}
END_TEST

START_TEST(recursive_and_errorcheck_initializers_keep_their_type)
{
	th_about("mutex_lock start_main spawn_thread", "PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP and "
		 "PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP write the type into glibc's __kind field: "
		 "the green mutex must leave it there, and a recursive mutex must count its "
		 "owner's locks");
	static const char *const lines[] = {
		"recursive: locked after waiting for another thread",
		"recursive: its owner locking it again: Success; unlocking twice: Success, Success",
		"error-checking: its owner locking it again: Resource deadlock avoided",
		"error-checking: unlocking it unlocked: Operation not permitted",
		NULL,
	};
	expect_program("patch_rules", "kinds", lines, NULL);
}
END_TEST

START_TEST(timed_locks_and_waits_park)
{
	th_about("mutex_lock cond_wait start_main spawn_thread", "pthread_mutex_timedlock, "
		 "pthread_mutex_clocklock and pthread_cond_clockwait must park like their untimed "
		 "kin: the real ones wait in the kernel and stop every green thread");
	static const char *const names[] = { "pthread_mutex_timedlock", "pthread_mutex_clocklock",
					     "pthread_cond_clockwait" };
	static const char *const lines[] = { "pthread_mutex_timedlock: Connection timed out",
					     "pthread_mutex_clocklock: Connection timed out",
					     "pthread_cond_clockwait: Connection timed out", NULL };
	char out[4096];
	expect_program("patch_rules", "timed", lines, out);
	for (int i = 0; i < 3; i++) {
		char after[80];
		snprintf(after, sizeof after, "%s: Connection timed out, while another thread slept "
			 "10 ms ", names[i]);
		long ticks = number_after(out, after);
		if (ticks < 3)
			th_fail("while %s waited 100 ms, another green thread should have slept 10 ms "
				"about nine times; it did %ld times: the wait held the kernel thread. "
				"It printed:\n%s", names[i], ticks, out);
	}
}
END_TEST

START_TEST(fds_closed_every_way_are_forgotten)
{
	th_about("start_main spawn_thread", "the hub keeps what it asked epoll for each fd; an fd "
		 "closed behind its back (fclose, close_range, dup2, or close on another kernel "
		 "thread) whose number comes back looks registered already, and its reader never "
		 "wakes: the patch must forget it first");
	static const char *const ways[] = { "fclose", "close_range", "dup2", "worker" };
	for (int i = 0; i < 4; i++) {
		char line[96];
		snprintf(line, sizeof line, "after %s, a reader of a new pipe with the same number got "
			 "its byte", ways[i]);
		const char *const lines[] = { line, NULL };
		expect_program("patch_rules", ways[i], lines, NULL);
	}
}
END_TEST

START_TEST(a_dup_left_open_does_not_make_the_hub_spin)
{
	th_about("start_main spawn_thread", "close() takes an fd out of the epoll set only if no "
		 "other fd refers to its file; after a dup, the patch's close must take it out "
		 "itself (hub_forget_fd), or every epoll_wait reports it");
	static const char *const lines[] = { "a 500 ms sleep used", NULL };
	char out[4096];
	expect_program("patch_rules", "dup", lines, out);
	long cpu = number_after(out, "a 500 ms sleep used ");
	if (cpu > 100)
		th_fail("with a dup of a closed, readable pipe open, a 500 ms sleep used %ld ms of "
			"CPU: the hub went round and round on a registration left behind", cpu);
}
END_TEST

START_TEST(a_burst_of_offloads_gets_its_workers)
{
	th_about("start_main spawn_thread", "offload_run starts a worker only when none is idle; "
		 "four jobs at once behind one idle worker run one after another unless the "
		 "queued jobs count too");
	static const char *const lines[] = { "at most 4 ran at once", NULL };
	expect_program("patch_rules", "burst", lines, NULL);
}
END_TEST

START_TEST(a_cancelled_offload_lets_the_others_run)
{
	th_about("start_main spawn_thread", "a cancelled green thread cannot park, but its job "
		 "lives on its stack: it must wait for the worker without blocking the hub's kernel "
		 "thread (yield, not a blocking read)");
	static const char *const lines[] = { "the job saw its word", NULL };
	expect_program("patch_rules", "cancelled", lines, NULL);
}
END_TEST

static Suite *patch_suite(void)
{
	Suite *s = th_suite("06-monkey-patch");
	TCase *tc = th_tcase(s, "chapter 02 preloaded", "patch_read spawn_thread start_main");
	th_tcase_deadline(tc, 15);
	th_test(tc, serves_ten_thousand_clients_on_one_thread);
	th_test(tc, preloaded_server_survives_short_reads_and_writes);

	tc = th_tcase(s, "chapter 01 patched", "patch_read");
	th_test(tc, patched_serial_server_still_serves_one_client_at_a_time);

	tc = th_tcase(s, "fcntl", "fcntl_flags");
	th_test(tc, getfl_still_shows_a_blocking_socket);
	th_test(tc, setfl_with_the_flags_getfl_gave_keeps_the_fd_nonblocking);

	tc = th_tcase(s, "fcntl and read", "fcntl_flags patch_read");
	th_test(tc, program_asking_for_nonblock_gets_eagain);
	th_test(tc, clearing_nonblock_makes_reads_park_again);

	tc = th_tcase(s, "read", "patch_read");
	th_test(tc, patched_read_waits_for_a_green_writer);

	tc = th_tcase(s, "threads", "spawn_thread start_main");
	th_test(tc, join_returns_the_thread_value);

	tc = th_tcase(s, "mutex", "mutex_lock");
	th_tcase_deadline(tc, 10);
	th_test(tc, mutex_keeps_a_counter_exact_across_parks);
	th_test(tc, relocking_an_owned_mutex_fails_with_edeadlk);
	th_test(tc, mutex_goes_to_its_waiters_first_come_first_served);

	tc = th_tcase(s, "cond", "cond_wait");
	th_test(tc, cond_wakes_a_waiter_and_times_out);
	th_test(tc, timed_out_wait_returns_holding_the_mutex);
	th_test(tc, timed_out_waiter_leaves_the_queue);
	th_test(tc, timed_wait_signalled_in_time_succeeds);
	th_test(tc, signal_wakes_one_waiter_and_broadcast_wakes_both);
	th_test(tc, cond_wait_without_the_mutex_fails_with_eperm);

	/* What the kernel says, whether or not any TODO is done. */
	tc = th_tcase(s, "what the kernel sees", "");
	th_test(tc, raw_syscall_sees_the_hidden_nonblocking_flag);

	tc = th_tcase(s, "cannot be patched", "start_main spawn_thread");
	th_tcase_deadline(tc, 10);
	th_test(tc, raw_syscall_read_blocks_every_green_thread);
	th_test(tc, spinning_thread_starves_the_others);
	th_test(tc, yielding_spinner_lets_the_others_run);
	th_test(tc, offload_lets_others_run_during_a_blocking_call);
	th_test(tc, offload_resolves_a_name);

	tc = th_tcase(s, "what threads rely on", "start_main spawn_thread");
	th_tcase_deadline(tc, 10);
	th_test(tc, threads_in_accept_on_one_socket_take_turns);
	th_test(tc, a_blocking_write_writes_everything);
	th_test(tc, fds_closed_every_way_are_forgotten);
	th_test(tc, a_dup_left_open_does_not_make_the_hub_spin);
	th_test(tc, a_burst_of_offloads_gets_its_workers);
	th_test(tc, a_cancelled_offload_lets_the_others_run);
	tc = th_tcase(s, "mutex kinds", "mutex_lock start_main spawn_thread");
	th_test(tc, recursive_and_errorcheck_initializers_keep_their_type);
	tc = th_tcase(s, "timed waits", "mutex_lock cond_wait start_main spawn_thread");
	th_test(tc, timed_locks_and_waits_park);
	return s;
}

int main(void)
{
	return th_run(patch_suite());
}
