/* Chapter 01's tests: the blocking server accepts clients one after another,
 * and serves one at a time. The echo itself, misbehaving clients and the
 * command line are tested for every chapter in tests/all-chapters. */
#define _GNU_SOURCE

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* How long a waiting client must hear nothing. Absence cannot be proven by
 * waiting, but a server that serves two clients at once answers in well under
 * a millisecond on loopback, so 300 ms of silence is unambiguous. */
enum { SILENCE_MS = 300 };

static void echo_text(int fd, const char *text)
{
	th_expect_echo(fd, text, strlen(text));
}

/* ---- accept_loop --------------------------------------------------------- */

START_TEST(serves_a_client)
{
	th_about("accept_loop echo_loop", "the server does not accept() clients, or does not echo");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	echo_text(fd, "hello\n");
	th_close(fd);
}
END_TEST

START_TEST(serves_clients_one_after_another)
{
	th_about("accept_loop", "the server stops after its first client: accept() is not in a loop");
	struct th_server *server = th_start(NULL);
	for (int i = 0; i < 5; i++) {
		int fd = th_connect(server);
		echo_text(fd, "one client after another");
		th_close(fd);
	}
}
END_TEST

START_TEST(second_client_waits_until_first_leaves)
{
	th_about("accept_loop", "the server is not serving one client at a time, "
		 "or does not go back to accept() when a client leaves");
	struct th_server *server = th_start(NULL);
	int first = th_connect(server);
	echo_text(first, "first");

	/* The kernel completes the second connection into the accept queue, but
	 * the server is blocked reading from the first client. */
	int second = th_connect(server);
	static const char waiting[] = "second";
	struct th_exchange ex = { .send = waiting, .send_len = strlen(waiting) };
	struct th_reply reply;
	th_exchange(second, &ex, &reply);
	th_reply_free(&reply);
	th_expect_silence(second, SILENCE_MS, "the server is busy with the first client, "
			  "which is still connected");

	echo_text(first, "first is still being served");
	th_close(first);

	/* Now the server accepts the second client and finds its bytes waiting. */
	ex = (struct th_exchange){ .want = strlen(waiting) };
	th_exchange(second, &ex, &reply);
	th_check_echo(waiting, strlen(waiting), &reply);
	th_reply_free(&reply);
	th_close(second);
}
END_TEST

START_TEST(verbose_flag_logs_connects_and_disconnects)
{
	th_about("accept_loop", "with -v, log \"ADDRESS connected\" and \"ADDRESS disconnected\"");
	static const char *const verbose[] = { "-v", NULL };
	struct th_launch launch = { .args = verbose };
	struct th_server *server = th_start(&launch);
	int fd = th_connect(server);
	echo_text(fd, "log me");
	th_close(fd);
	/* The log line is written after the close, so have the server serve one
	 * more client: by then the first one's lines are in the log. */
	fd = th_connect(server);
	echo_text(fd, "and me");
	const char *log = th_server_stderr(server);
	if (strstr(log, " connected") == NULL || strstr(log, " disconnected") == NULL)
		th_fail("expected \"... connected\" and \"... disconnected\" lines on stderr with -v; "
			"stderr has:\n%s", log);
	th_close(fd);
}
END_TEST

static Suite *blocking_suite(void)
{
	Suite *s = th_suite("01-blocking");
	TCase *tc = th_tcase(s, "accept_loop", "accept_loop");
	th_test(tc, serves_a_client);
	th_test(tc, serves_clients_one_after_another);
	th_test(tc, second_client_waits_until_first_leaves);
	th_test(tc, verbose_flag_logs_connects_and_disconnects);
	return s;
}

int main(void)
{
	return th_run(blocking_suite());
}
