/* Chapter 02's tests: with a thread per connection the server serves many
 * clients at once, lets no client stall the others, counts its connections
 * exactly and holds its cap on handler threads. (The echo itself is tested
 * for every chapter in tests/all-chapters.) */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "addr.h"
#include "harness.h"

enum { KIB = 1024, MIB = 1024 * 1024, SILENCE_MS = 300 };

/* Send text and expect its echo within 2 s: plenty for a few bytes. */
static void echo_text(int fd, const char *text)
{
	struct th_exchange ex = { .send = text, .send_len = strlen(text), .want = strlen(text),
				  .timeout_ms = 2000 };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	th_check_echo(text, strlen(text), &reply);
	th_reply_free(&reply);
}

/* Start the server with tests/02-threads/thread_order.c preloaded, making
 * the orders named in `order` happen (see that file): spurious wake-ups,
 * woken threads running first, new threads running first, a failing
 * pthread_create(). */
static struct th_server *start_in_order(const char *order, const char *const *args)
{
	setenv("THREAD_ORDER", order, 1);
	struct th_launch launch = { .args = args, .preload = th_build_path("thread_order.so") };
	struct th_server *server = th_start(&launch);
	unsetenv("THREAD_ORDER");
	if (strstr(th_server_stderr(server), "thread_order: loaded into") == NULL)
		th_fail("the thread-order shim (LD_PRELOAD=%s) did not load into the server",
			launch.preload);
	return server;
}

/* Has the server exited? It stays a zombie, for th_stop() to collect. */
static bool has_exited(const struct th_server *server, int ms)
{
	for (int waited = 0;; waited += 5) {
		siginfo_t info = { 0 };
		if (waitid(P_PID, (id_t)server->pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
			th_fail("waitid: %s", strerror(errno));
		if (info.si_pid != 0)
			return true;
		if (waited >= ms)
			return false;
		th_sleep_ms(5);
	}
}

/* The server's threads: the entries of /proc/PID/task. */
static int count_threads(const struct th_server *server)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)server->pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		th_fail("opendir %s: %s (has the server exited?)", path, strerror(errno));
	int n = 0;
	for (struct dirent *e; (e = readdir(dir)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* Wait until the server is down to `threads` threads again: the handlers of
 * the clients that left have returned. Quietly, if it exited meanwhile: the
 * test's next step says what that broke. */
static void wait_for_threads(const struct th_server *server, int threads, const char *after)
{
	for (int waited = 0; !has_exited(server, 0); waited += 5) {
		int now = count_threads(server);
		if (now == threads)
			return;
		if (waited >= th_ms(2000))
			th_fail("%s, the server should be down to %d threads within %d ms; it has %d: "
				"a handler thread did not return", after, threads, th_ms(2000), now);
		th_sleep_ms(5);
	}
}

/* The server's address space, VmSize in /proc/PID/status, in KiB. */
static long vm_size_kib(const struct th_server *server)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)server->pid);
	FILE *status = fopen(path, "r");
	if (status == NULL)
		th_fail("fopen %s: %s (has the server exited?)", path, strerror(errno));
	long kib = -1;
	while (kib < 0 && fgets(line, sizeof line, status) != NULL)
		if (sscanf(line, "VmSize: %ld", &kib) != 1)
			kib = -1;
	fclose(status);
	if (kib < 0)
		th_fail("no VmSize in %s", path);
	return kib;
}

static void expect_served(const struct th_server *server, int connections)
{
	char expected[64];
	snprintf(expected, sizeof expected, "served %d connections", connections);
	if (strstr(th_server_stderr(server), expected) == NULL)
		th_fail("the server should print \"%s\" on exit; its stderr ended with:\n%s", expected,
			th_server_stderr(server));
}

/* ---- Concurrency --------------------------------------------------------- */

START_TEST(serves_two_hundred_clients_at_once)
{
	th_about("spawn_handler handler_thread", "clients are not each given a thread of their "
		 "own, so all but one wait");
	struct th_server *server = th_start(NULL);
	unsigned char *data = th_payload(KIB, 21);
	th_echo_many(server, 200, data, KIB, 100, 0);
	free(data);
}
END_TEST

START_TEST(idle_client_does_not_stall_others)
{
	th_about("spawn_handler", "the accept loop serves a client itself instead of handing it "
		 "to a thread, so it cannot accept the next one");
	struct th_server *server = th_start(NULL);
	int idle = th_connect(server);	/* connected, and silent */
	int other = th_connect(server);
	echo_text(other, "not stalled by the idle client");
	th_close(other);
	echo_text(idle, "and the idle one is served too");
	th_close(idle);
}
END_TEST

START_TEST(client_that_never_reads_does_not_stall_others)
{
	th_about("spawn_handler", "a handler blocked writing to a client that does not read "
		 "must hold up only its own thread");
	struct th_server *server = th_start(NULL);
	int hog = th_connect(server);
	th_send_without_reading(hog, 16 * MIB);
	int other = th_connect(server);
	echo_text(other, "not stalled by the hog");
	th_close(other);
	th_reset(hog);
}
END_TEST

START_TEST(verbose_flag_logs_each_client_by_its_address)
{
	th_about("spawn_handler handler_thread", "the handler's struct client does not hold a "
		 "NUL-terminated copy of the address, or the handler uses it after free()");
	static const char *const verbose[] = { "-v", NULL };
	struct th_launch launch = { .args = verbose };
	struct th_server *server = th_start(&launch);
	int threads = count_threads(server);
	for (int i = 0; i < 3; i++) {
		int fd = th_connect(server);
		char address[ADDR_TEXT_MAX];
		th_client_address(fd, address, sizeof address);
		echo_text(fd, "log me");
		th_close(fd);
		wait_for_threads(server, threads, "after a client left");
		static const char *const events[] = { "connected", "disconnected" };
		for (int e = 0; e < 2; e++) {
			char line[ADDR_TEXT_MAX + 32];
			snprintf(line, sizeof line, "%s %s\n", address, events[e]);
			if (strstr(th_server_stderr(server), line) == NULL)
				th_fail("with -v, expected the line \"%s %s\" on stderr (%s is the "
					"client's address); stderr has:\n%s", address, events[e], address,
					th_server_stderr(server));
		}
	}
}
END_TEST

START_TEST(ended_handlers_give_their_stacks_back)
{
	th_about("spawn_handler", "the handler threads are joinable (pthread_create() without "
		 "handler_attr): nobody joins them, so each keeps its stack after it ends");
	enum { CLIENTS = 20 };
	struct th_server *server = th_start(NULL);
	int threads = count_threads(server);
	/* One client first: the stacks of ended threads are cached for the next
	 * ones (pthread_attr_setstacksize(3)), so measure from there. */
	long before = 0;
	for (int i = 0; i <= CLIENTS; i++) {
		int fd = th_connect(server);
		echo_text(fd, "one at a time");
		th_close(fd);
		wait_for_threads(server, threads, "after a client left");
		if (i == 0)
			before = vm_size_kib(server);
	}
	long grown = vm_size_kib(server) - before;
	/* A detached handler's stack is reused by the next one: nothing grows.
	 * A joinable one keeps its 64 KiB or more, each. */
	if (grown >= CLIENTS * 64 / 2)
		th_fail("%d clients came and went one at a time, yet the server's address space "
			"(VmSize) grew by %ld KiB, %ld KiB a client: each ended handler kept its stack",
			CLIENTS, grown, grown / CLIENTS);
}
END_TEST

START_TEST(each_handler_frees_its_client)
{
	th_about("handler_thread", "the struct client that spawn_handler() allocated is never "
		 "freed: the handler owns it, and must free() it before it returns");
	/* The thread-order shim tells when a thread returns without having
	 * freed the argument it was started with. */
	struct th_server *server = start_in_order("", NULL);
	int threads = count_threads(server);
	for (int i = 0; i < 3; i++) {
		int fd = th_connect(server);
		echo_text(fd, "free me");
		th_close(fd);
		wait_for_threads(server, threads, "after a client left");
	}
	const char *leak = strstr(th_server_stderr(server), "without freeing");
	if (leak != NULL)
		th_fail("three clients came and went, and the thread-order shim reports that a handler "
			"returned without freeing its struct client (a leak per connection); "
			"its stderr:\n%s", th_server_stderr(server));
}
END_TEST

START_TEST(counts_every_connection_exactly)
{
	th_about("handler_ended handler_thread", "the count is updated without the lock (an "
		 "increment is a load, an add and a store: two threads can lose one), or not at all");
	enum { ROUNDS = 20, AT_ONCE = 20 };
	struct th_server *server = th_start(NULL);
	for (int round = 0; round < ROUNDS; round++) {
		int fds[AT_ONCE];
		struct th_exchange ex[AT_ONCE];
		struct th_reply replies[AT_ONCE];
		for (int i = 0; i < AT_ONCE; i++) {
			fds[i] = th_connect(server);
			ex[i] = (struct th_exchange){ .send = "count me", .send_len = 8, .want = 8 };
		}
		th_exchange_many(fds, ex, replies, AT_ONCE);
		for (int i = 0; i < AT_ONCE; i++) {
			th_check_echo("count me", 8, &replies[i]);
			th_reply_free(&replies[i]);
			th_close(fds[i]);
		}
	}
	th_stop(server);
	char expected[64];
	snprintf(expected, sizeof expected, "served %d connections", ROUNDS * AT_ONCE);
	if (strstr(th_server_stderr(server), expected) == NULL)
		th_fail("after %d connections, each served and closed, the server should print "
			"\"%s\" on exit; its stderr ended with:\n%s", ROUNDS * AT_ONCE, expected,
			th_server_stderr(server));
}
END_TEST

/* With -m 2, a third client waits until one of the first two leaves. */
static void check_cap_of_two(struct th_server *server)
{
	int first = th_connect(server);
	int second = th_connect(server);
	echo_text(first, "first");
	echo_text(second, "second");

	int third = th_connect(server);
	struct th_exchange ex = { .send = "third", .send_len = 5 };
	struct th_reply reply;
	th_exchange(third, &ex, &reply);
	th_reply_free(&reply);
	th_expect_silence(third, SILENCE_MS, "with -m 2, two clients are being served already");

	th_close(first);
	ex = (struct th_exchange){ .want = 5, .timeout_ms = 2000 };
	th_exchange(third, &ex, &reply);
	th_check_echo("third", 5, &reply);
	th_reply_free(&reply);
	th_close(second);
	th_close(third);
}

static const char *const cap_of_two[] = { "-m", "2", NULL };

START_TEST(cap_holds_until_a_client_leaves)
{
	th_about("wait_for_slot handler_ended", "the accept loop does not wait for a free slot "
		 "before accepting, so more than MAX clients are served at once; or, if the third "
		 "client is never served, the handler that ends does not wake the accept loop");
	struct th_launch launch = { .args = cap_of_two };
	check_cap_of_two(th_start(&launch));
}
END_TEST

START_TEST(cap_holds_through_spurious_wakeups)
{
	th_about("wait_for_slot handler_ended", "pthread_cond_wait() may return without a "
		 "wake-up: wait in a while loop that looks at running again, not an if; and "
		 "running must be lowered under the lock, before the wake-up, or the woken accept "
		 "loop still sees it at the cap and sleeps again, for good");
	/* Here every other wait returns at once, and a thread woken by a
	 * handler runs before that handler goes on: both are allowed, and rare. */
	check_cap_of_two(start_in_order("spurious woken-first", cap_of_two));
}
END_TEST

/* ---- Shutdown: draining the handlers --------------------------------------- */

/* Wait until `n` threads wait on handlers.ended at once, as the thread-order
 * shim says. */
static void wait_for_waiters(const struct th_server *server, int n, const char *who)
{
	char text[64];
	snprintf(text, sizeof text, "thread_order: %d thread%s wait%s on", n, n > 1 ? "s" : "",
		 n > 1 ? "" : "s");
	if (!th_stderr_shows(server, text, 2000))
		th_fail("expected %s to wait on handlers.ended (%d at once), but %s not within %d ms. "
			"Does wait_for_slot() wait while running is at the cap, and does running count "
			"exactly the handlers still serving? The server's stderr:\n%s", who, n,
			n > 1 ? "they did" : "it did", th_ms(2000), th_server_stderr(server));
}

START_TEST(shutdown_ends_when_the_last_client_leaves)
{
	th_about("handler_ended wait_for_slot", "the handler that ends wakes only one waiter "
		 "(pthread_cond_signal): the accept loop, and the shutdown, which waits for the "
		 "last handler, sleeps until its 2 s deadline; wake both with "
		 "pthread_cond_broadcast. (If the accept loop never waits, see wait_for_slot.)");
	static const char *const cap_of_one[] = { "-m", "1", NULL };
	/* A signal wakes the thread that has waited longest, here the accept
	 * loop; the woken one runs before the handler goes on. */
	struct th_server *server = start_in_order("woken-first", cap_of_one);
	int fd = th_connect(server);
	echo_text(fd, "the only one");
	/* The accept loop waits for a slot; after SIGTERM the shutdown waits too. */
	wait_for_waiters(server, 1, "the accept loop (-m 1, one client: wait_for_slot)");
	if (kill(server->pid, SIGTERM) < 0)
		th_fail("kill: %s", strerror(errno));
	wait_for_waiters(server, 2, "the accept loop (-m 1, one client) and the shutdown (SIGTERM)");
	th_close(fd);
	/* The right server exits within milliseconds, the wrong one after 2 s
	 * (DRAIN_SECONDS): 1 s tells them apart on any machine. */
	if (!has_exited(server, th_ms(1000)))
		th_fail("after SIGTERM the server waits for its clients; the last one left, yet the "
			"server was still running %d ms later. Its stderr:\n%s", th_ms(1000),
			th_server_stderr(server));
	expect_served(server, 1);
}
END_TEST

START_TEST(shutdown_waits_for_every_connected_client)
{
	th_about("spawn_handler handler_thread wait_for_slot", "running is raised after "
		 "pthread_create(), so a handler that ends at once counts itself out first; or the "
		 "handler counts itself out (handler_ended) before it has served its client. (If "
		 "the accept loop never waits, see wait_for_slot.)");
	/* Here a new thread runs first, until it returns or blocks, and a
	 * thread woken by a handler runs before that handler goes on. */
	struct th_server *server = start_in_order("child-first woken-first", cap_of_two);
	int threads = count_threads(server);
	int stays = th_connect(server);
	int leaves = th_connect(server);
	echo_text(stays, "I stay");
	echo_text(leaves, "I leave");
	/* A third client waits in the accept queue, everything sent and its
	 * side closed: its handler will not block. */
	int quick = th_connect(server);
	struct th_exchange ex = { .send = "quick", .send_len = 5, .shut_wr = true };
	struct th_reply reply;
	th_exchange(quick, &ex, &reply);
	th_reply_free(&reply);

	wait_for_waiters(server, 1, "the accept loop (-m 2, two clients: wait_for_slot)");
	if (kill(server->pid, SIGTERM) < 0)
		th_fail("kill: %s", strerror(errno));
	wait_for_waiters(server, 2, "the accept loop (-m 2, two clients) and the shutdown (SIGTERM)");
	/* A slot frees up: the quick client is accepted, served and gone, all
	 * while pthread_create() runs. */
	th_close(leaves);
	ex = (struct th_exchange){ .until_eof = true, .timeout_ms = 2000 };
	th_exchange(quick, &ex, &reply);
	th_check_echo("quick", 5, &reply);
	th_reply_free(&reply);
	th_close(quick);
	wait_for_threads(server, threads + 1, "after two of the three clients left");

	/* One client is still connected: the shutdown must wait for it. */
	echo_text(stays, "still served while the server shuts down");
	th_close(stays);
	if (!has_exited(server, th_ms(2000)))
		th_fail("after SIGTERM the server waits for its clients; the last one left, yet the "
			"server was still running %d ms later. Its stderr:\n%s", th_ms(2000),
			th_server_stderr(server));
	expect_served(server, 3);
}
END_TEST

/* ---- When pthread_create() fails ------------------------------------------ */

START_TEST(failed_thread_start_drops_only_that_client)
{
	th_about("spawn_handler handler_ended", "when pthread_create() fails (it returns the "
		 "error number, positive; it does not set errno), report it, close the client's "
		 "socket, free its struct client and call handler_ended(false), which gives the slot "
		 "back and does not count the client as served");
	/* pthread_create() #1 starts the signal thread, #2 the first client's
	 * handler; #3, for the second client, fails with EAGAIN. */
	struct th_server *server = start_in_order("fail-create=3", cap_of_two);
	int first = th_connect(server);
	echo_text(first, "first");

	int dropped = th_connect(server);
	struct th_exchange ex = { .send = "dropped", .send_len = 7, .until_eof = true,
				  .timeout_ms = 2000 };
	struct th_reply reply;
	th_exchange(dropped, &ex, &reply);
	if (!reply.eof)
		th_fail("the server could not start a thread for the second client, so it should have "
			"closed that connection; %d ms later it was still open", th_ms(2000));
	th_reply_free(&reply);
	th_close(dropped);
	if (strstr(th_server_stderr(server), "pthread_create") == NULL)
		th_fail("pthread_create() failed with EAGAIN; expected a warning naming it on stderr, "
			"which has:\n%s", th_server_stderr(server));

	/* With -m 2, one handler running: there is a slot for the third. */
	int third = th_connect(server);
	ex = (struct th_exchange){ .send = "third", .send_len = 5, .want = 5, .timeout_ms = 2000 };
	th_exchange(third, &ex, &reply);
	th_check_echo("third", 5, &reply);
	th_reply_free(&reply);
	th_close(third);
	th_close(first);
	th_stop(server);
	expect_served(server, 2);
}
END_TEST

static Suite *threads_suite(void)
{
	Suite *s = th_suite("02-threads");

	TCase *tc = th_tcase(s, "spawn_handler", "spawn_handler handler_thread");
	th_test(tc, serves_two_hundred_clients_at_once);
	th_test(tc, idle_client_does_not_stall_others);
	th_test(tc, client_that_never_reads_does_not_stall_others);
	th_test(tc, verbose_flag_logs_each_client_by_its_address);
	th_test(tc, ended_handlers_give_their_stacks_back);
	th_test(tc, each_handler_frees_its_client);

	tc = th_tcase(s, "thread_start_failure", "spawn_handler handler_ended");
	th_test(tc, failed_thread_start_drops_only_that_client);

	tc = th_tcase(s, "handler_ended", "handler_ended handler_thread");
	th_test(tc, counts_every_connection_exactly);

	tc = th_tcase(s, "shutdown", "spawn_handler handler_thread handler_ended wait_for_slot");
	th_test(tc, shutdown_waits_for_every_connected_client);
	th_test(tc, shutdown_ends_when_the_last_client_leaves);

	tc = th_tcase(s, "wait_for_slot", "wait_for_slot handler_ended");
	th_test(tc, cap_holds_until_a_client_leaves);
	th_test(tc, cap_holds_through_spurious_wakeups);
	return s;
}

int main(void)
{
	return th_run(threads_suite());
}
