/* Chapter 02's tests: with a thread per connection the server serves many
 * clients at once, lets no client stall the others, counts its connections
 * exactly and holds its cap on handler threads. (The echo itself is tested
 * for every chapter in tests/all-chapters.) */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { KIB = 1024, MIB = 1024 * 1024, SILENCE_MS = 300 };

static void echo_text(int fd, const char *text)
{
	th_expect_echo(fd, text, strlen(text));
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

START_TEST(cap_holds_until_a_client_leaves)
{
	th_about("wait_for_slot", "the accept loop does not wait for a free slot before "
		 "accepting, so more than MAX clients are served at once");
	static const char *const cap_of_two[] = { "-m", "2", NULL };
	struct th_launch launch = { .args = cap_of_two };
	struct th_server *server = th_start(&launch);
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
	ex = (struct th_exchange){ .want = 5 };
	th_exchange(third, &ex, &reply);
	th_check_echo("third", 5, &reply);
	th_reply_free(&reply);
	th_close(second);
	th_close(third);
}
END_TEST

static Suite *threads_suite(void)
{
	Suite *s = th_suite("02-threads");

	TCase *tc = th_tcase(s, "spawn_handler", "spawn_handler handler_thread");
	th_test(tc, serves_two_hundred_clients_at_once);
	th_test(tc, idle_client_does_not_stall_others);
	th_test(tc, client_that_never_reads_does_not_stall_others);

	tc = th_tcase(s, "handler_ended", "handler_ended handler_thread");
	th_test(tc, counts_every_connection_exactly);

	tc = th_tcase(s, "wait_for_slot", "wait_for_slot");
	th_test(tc, cap_holds_until_a_client_leaves);
	return s;
}

int main(void)
{
	return th_run(threads_suite());
}
