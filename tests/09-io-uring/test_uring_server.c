/* Chapter 09's server: it runs on io_uring by default and on epoll with -b
 * epoll, serving alike; on a machine that refuses io_uring it says so in one
 * line and runs on epoll, unless -b uring insists; on io_uring, an idle
 * client's read in flight is cut at its deadline, and the reads in flight at
 * shutdown are cancelled, and the server still exits 0.
 *
 * The machine without io_uring is a wrapper (without_io_uring.c) with a
 * seccomp filter, as a container runtime's default profile has. Where this
 * machine refuses io_uring itself, the tests that need it are not run: one
 * line on stderr says "SKIPPED", how many and why. */
#define _GNU_SOURCE

#include <errno.h>
#include <liburing.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static void signal_server(const struct th_server *server, int sig)
{
	if (kill(server->pid, sig) < 0)
		th_fail("kill %d: %s", (int)server->pid, strerror(errno));
}

/* The hub's name in the server's coroutine dump (SIGUSR1): "(io_uring)" or
 * "(epoll)". */
static void expect_hub(const struct th_server *server, const char *name)
{
	char text[32];
	snprintf(text, sizeof text, "the hub (%s)", name);
	signal_server(server, SIGUSR1);
	if (!th_stderr_shows(server, text, 1000))
		th_fail("the server's coroutine dump (SIGUSR1) does not say \"%s\"; its stderr:\n%s",
			text, th_server_stderr(server));
}

static void echo_a_few_clients(struct th_server *server)
{
	unsigned char *data = th_payload(3000, 91);
	th_echo_many(server, 20, data, 3000, 0, 0);
	free(data);
}

/* ---- Which hub --------------------------------------------------------- */

START_TEST(the_server_runs_on_io_uring_by_default)
{
	th_about("submit_and_park complete", "without -b, the server runs on io_uring where the "
		 "kernel allows it, and serves every client");
	struct th_server *server = th_start(&(struct th_launch){ 0 });
	echo_a_few_clients(server);
	expect_hub(server, "io_uring");
	if (strstr(th_server_stderr(server), "not available") != NULL)
		th_fail("the server said io_uring was not available, on a machine where it is:\n%s",
			th_server_stderr(server));
}
END_TEST

START_TEST(with_b_epoll_the_same_server_runs_on_epoll)
{
	th_about("", "-b epoll runs chapter 07's hub: the same coroutines, readiness instead of "
		 "completion");
	static const char *const args[] = { "-b", "epoll", NULL };
	struct th_server *server = th_start(&(struct th_launch){ .args = args });
	echo_a_few_clients(server);
	expect_hub(server, "epoll");
}
END_TEST

/* ---- A machine without io_uring ----------------------------------------- */

static const char not_available[] = "io_uring is not available here";

/* Why this machine refuses io_uring itself (see main()), or NULL. */
static const char *refused;

/* The server under test, on a machine without io_uring: through the
 * seccomp wrapper, or as it is where the machine refuses io_uring already
 * (qemu-user, which cannot run the wrapper's exec of another AArch64
 * program anyway). */
static const char *without_io_uring(void)
{
	return refused == NULL ? th_build_path("without_io_uring") : NULL;
}

START_TEST(without_io_uring_the_server_says_so_in_one_line_and_runs_on_epoll)
{
	th_about("", "where io_uring_setup fails (a seccomp profile here), the server must say so "
		 "in one line on stderr and serve on epoll");
	struct th_launch launch = { .server = without_io_uring() };
	struct th_server *server = th_start(&launch);
	echo_a_few_clients(server);
	const char *err = th_server_stderr(server);
	const char *first = strstr(err, not_available);
	if (first == NULL || strstr(first + 1, not_available) != NULL)
		th_fail("with io_uring_setup refused, the server's stderr should say \"%s\" once; "
			"it says:\n%s", not_available, err);
	if (strncmp(first + strlen(not_available), " (io_uring_setup: ", 18) != 0)
		th_fail("the line should give the reason (\"(io_uring_setup: Operation not "
			"permitted)\" here); it is:\n%s", first);
	expect_hub(server, "epoll");
}
END_TEST

START_TEST(b_uring_without_io_uring_fails_with_the_reason)
{
	th_about("", "-b uring asks for io_uring and nothing else: where it is refused, the server "
		 "must exit 1 with the reason, not serve on epoll");
	static const char *const args[] = { "-p", "0", "-b", "uring", NULL };
	struct th_launch launch = { .server = without_io_uring(), .args = args };
	char out[1024];
	int status = th_run_program(&launch, 3000, out, sizeof out);
	if (status != 1 || strstr(out, "io_uring") == NULL)
		th_fail("with io_uring_setup refused, \"echo_server -b uring\" should exit 1 saying "
			"why; it exited %d, saying:\n%s", status, out);
}
END_TEST

/* ---- Deadlines and shutdown with reads in flight ------------------------- */

START_TEST(an_idle_client_is_closed_while_its_read_is_in_flight)
{
	th_about("cancel_and_wait submit_and_park", "with -t 1, the read in flight of a client "
		 "silent for a second must be cancelled at its deadline (and its completion waited "
		 "for), and the client closed; the others are served all along");
	static const char *const args[] = { "-t", "1", NULL };
	struct th_server *server = th_start(&(struct th_launch){ .args = args });
	int idle = th_connect(server);
	int busy = th_connect(server);
	th_expect_echo(idle, "hello", 5);
	/* 10 one-byte messages, 200 ms apart: two seconds of talking, each
	 * pause well inside the idle time. */
	unsigned char *data = th_payload(10, 92);
	struct th_exchange ex = { .send = data, .send_len = 10, .chunk = 1, .pause_ms = 200,
				  .want = 10, .timeout_ms = 10000 };
	struct th_reply reply;
	th_exchange(busy, &ex, &reply);
	th_check_echo(data, 10, &reply);
	th_reply_free(&reply);
	free(data);
	th_expect_eof(idle);
	th_expect_echo(busy, "still here", 10);
	th_close(idle);
	th_close(busy);
}
END_TEST

START_TEST(shutdown_cancels_the_reads_in_flight_and_exits_cleanly)
{
	th_about("cancel_and_wait submit_and_park", "with -g 0, SIGTERM cancels every client at "
		 "once; each client's read in flight must be cancelled and its completion waited for "
		 "before its coroutine closes the socket and ends; the server then exits 0");
	static const char *const args[] = { "-g", "0", NULL };
	struct th_server *server = th_start(&(struct th_launch){ .args = args });
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = th_connect(server);
		th_expect_echo(fds[i], "hi", 2);
	}
	signal_server(server, SIGTERM);
	for (int i = 0; i < 3; i++) {
		th_expect_eof(fds[i]);
		th_close(fds[i]);
	}
	th_stop(server);
}
END_TEST

/* Whether this machine lets a process set up the ring the hub asks for. */
static const char *uring_unavailable(void)
{
	static char why[160];
	struct io_uring ring;
	struct io_uring_params params = {
		.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	};
	int err = io_uring_queue_init_params(8, &ring, &params);
	if (err == 0) {
		io_uring_queue_exit(&ring);
		return NULL;
	}
	snprintf(why, sizeof why, "io_uring_setup: %s (a kernel before 6.1, qemu-user, "
		 "/proc/sys/kernel/io_uring_disabled above 0, or a seccomp profile)",
		 strerror(-err));
	return why;
}

int main(void)
{
	Suite *s = th_suite("io_uring server");
	refused = uring_unavailable();
	bool listing = getenv("TH_LIST_TESTS") != NULL;
	TCase *tc;
	if (refused == NULL || listing) {
		tc = th_tcase(s, "default_hub", "submit_and_park complete");
		th_test(tc, the_server_runs_on_io_uring_by_default);
		tc = th_tcase(s, "in_flight", "submit_and_park cancel_and_wait");
		th_tcase_deadline(tc, 10);
		th_test(tc, an_idle_client_is_closed_while_its_read_is_in_flight);
		th_test(tc, shutdown_cancels_the_reads_in_flight_and_exits_cleanly);
	} else {
		fprintf(stderr, "test_uring_server: SKIPPED the 3 io_uring tests: %s\n", refused);
	}
	tc = th_tcase(s, "other_hubs", "");
	th_test(tc, with_b_epoll_the_same_server_runs_on_epoll);
	th_test(tc, without_io_uring_the_server_says_so_in_one_line_and_runs_on_epoll);
	th_test(tc, b_uring_without_io_uring_fails_with_the_reason);
	return th_run(s);
}
