/* The server tests for every chapter whose server runs on coroutines: one
 * thread serves many clients at once, and an idle client neither stalls
 * anybody nor keeps the server from stopping. And the idle server: chapters
 * 03 and 04 burn a whole CPU (the problem chapter 05 solves), later ones
 * sleep. The echo itself and hostile clients are tested for every chapter
 * in tests/all-chapters. */
#define _GNU_SOURCE

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "promises.h"

enum { KIB = 1024 };

START_TEST(serves_two_hundred_clients_at_once)
{
	th_about(th_promise()->echo_todos, "a read that would block (EAGAIN) must yield to the other "
		 "coroutines and try again, not fail");
	struct th_server *server = th_start(NULL);
	unsigned char *data = th_payload(KIB, 31);
	th_echo_many(server, 200, data, KIB, 100, 0);
	free(data);
}
END_TEST

START_TEST(idle_client_does_not_stall_others)
{
	th_about(th_promise()->echo_todos, "a coroutine waiting for a silent client must yield, not block "
		 "the thread");
	struct th_server *server = th_start(NULL);
	int idle = th_connect(server);
	int other = th_connect(server);
	th_expect_echo(other, "not stalled", strlen("not stalled"));
	th_close(other);
	th_expect_echo(idle, "me neither", strlen("me neither"));
	th_close(idle);
}
END_TEST

START_TEST(stops_at_once_on_sigterm_with_an_idle_client_connected)
{
	th_about(th_promise()->echo_todos, "a coroutine waiting for a silent client must give up when "
		 "the server stops, or the server cannot exit while a client is connected (chapters "
		 "03 and 04: when take_turns() returns false, read_some() returns -1 with ECANCELED)");
	struct th_server *server = th_start(NULL);
	int idle = th_connect(server);
	/* One echo first: the client's coroutine exists now, and is back in
	 * its read, waiting for bytes that will not come. */
	th_expect_echo(idle, "one line, then silence", strlen("one line, then silence"));
	th_stop(server);
	th_close(idle);
}
END_TEST

/* CPU time an idle server uses in half a second. Busy-waiting, it gets all
 * the CPU the kernel gives it; sleeping in the kernel, next to none. */
static long idle_cpu_ms(struct th_server *server)
{
	long before = th_server_cpu_ms(server);
	struct timespec half_second = { .tv_nsec = 500 * 1000 * 1000 };
	nanosleep(&half_second, NULL);
	return th_server_cpu_ms(server) - before;
}

START_TEST(idle_server_burns_a_cpu)
{
	th_about("", "this chapter's server never sleeps: with no client at all its coroutines "
		 "keep yielding to each other. If this fails, the server sleeps somewhere");
	struct th_server *server = th_start(NULL);
	long used = idle_cpu_ms(server);
	/* A loaded machine may give it a small share, but never next to none. */
	if (used < 50)
		th_fail("an idle server of this chapter should spin, but it used only %ld ms of "
			"CPU in 500 ms", used);
}
END_TEST

START_TEST(idle_server_sleeps)
{
	th_about(th_promise()->idle_todos, "with nothing to do, the server must wait in the kernel "
		 "(epoll_wait), not keep yielding");
	struct th_server *server = th_start(NULL);
	long used = idle_cpu_ms(server);
	if (used > 20)
		th_fail("an idle server used %ld ms of CPU in 500 ms: it is spinning", used);
}
END_TEST

static Suite *server_suite(void)
{
	Suite *s = th_suite("coroutine server");
	TCase *tc = th_tcase(s, "concurrency", th_promise()->echo_todos);
	th_test(tc, serves_two_hundred_clients_at_once);
	th_test(tc, idle_client_does_not_stall_others);
	/* From chapter 07 on, SIGTERM gives the clients a grace period: their
	 * own tests check it. */
	if (!th_promise()->drains_on_stop) {
		tc = th_tcase(s, "stopping", th_promise()->echo_todos);
		th_test(tc, stops_at_once_on_sigterm_with_an_idle_client_connected);
	}
	tc = th_tcase(s, "idle", th_promise()->idle_todos);
	th_tcase_deadline(tc, 10);	/* it watches the server for half a second */
	th_test(tc, th_promise()->spins_when_idle ? idle_server_burns_a_cpu
							  : idle_server_sleeps);
	return s;
}

int main(void)
{
	return th_run(server_suite());
}
