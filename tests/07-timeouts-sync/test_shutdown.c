/* Chapter 07's server: an idle timeout that closes a silent client and
 * nobody else, a cap on connections that makes the next client wait its
 * turn, and a graceful shutdown on SIGTERM: no new clients, the connected
 * ones finish within the grace period without losing a byte, the rest are
 * closed at its end, and the server exits 0 with a summary. */
#define _GNU_SOURCE

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

enum { KIB = 1024 };

static void signal_server(const struct th_server *server, int sig)
{
	if (kill(server->pid, sig) < 0)
		th_fail("kill %d: %s", (int)server->pid, strerror(errno));
}

/* ---- The idle timeout ----------------------------------------------------- */

START_TEST(idle_timeout_closes_the_idle_client_and_nobody_else)
{
	th_about("", "with -t 1 a client silent for a second must be closed, while a client "
		 "that keeps talking (a message every 200 ms) is served all along");
	static const char *const args[] = { "-t", "1", NULL };
	static const struct th_launch launch = { .args = args };
	struct th_server *server = th_start(&launch);
	int idle = th_connect(server);
	int busy = th_connect(server);
	unsigned char *data = th_payload(15, 41);
	/* 15 one-byte messages, 200 ms apart: three seconds of talking, each
	 * pause well inside the idle time. */
	struct th_exchange ex = { .send = data, .send_len = 15, .chunk = 1, .pause_ms = 200,
				  .want = 15, .timeout_ms = 10000 };
	struct th_reply reply;
	th_exchange(busy, &ex, &reply);
	th_check_echo(data, 15, &reply);
	if (reply.eof)
		th_fail("the server closed a client that sent a byte every 200 ms, with -t 1");
	th_reply_free(&reply);
	th_expect_eof(idle);
	th_expect_echo(busy, "still here", strlen("still here"));
	th_close(idle);
	th_close(busy);
	free(data);
}
END_TEST

START_TEST(a_slowloris_is_closed_without_stalling_others)
{
	th_about("", "a client that sends a byte every 2 s with -t 1 is closed at its first "
		 "long pause; meanwhile a bulk transfer goes through whole");
	static const char *const args[] = { "-t", "1", NULL };
	static const struct th_launch launch = { .args = args };
	struct th_server *server = th_start(&launch);
	unsigned char *slow = th_payload(4, 42);
	unsigned char *bulk = th_payload(256 * KIB, 43);
	int fds[2] = { th_connect(server), th_connect(server) };
	struct th_exchange ex[2] = {
		{ .send = slow, .send_len = 4, .chunk = 1, .pause_ms = 2000, .until_eof = true,
		  .timeout_ms = 10000 },
		{ .send = bulk, .send_len = 256 * KIB, .want = 256 * KIB },
	};
	struct th_reply replies[2];
	th_exchange_many(fds, ex, replies, 2);
	th_check_echo(bulk, 256 * KIB, &replies[1]);
	bool closed = replies[0].eof || replies[0].reset;
	if (!closed || replies[0].sent >= 4)
		th_fail("a client sending a byte every 2 s to a server with -t 1 should be "
			"closed after its first pause; it sent %zu bytes, got %zu back, and the "
			"server %s", replies[0].sent, replies[0].len,
			closed ? "closed it" : "never closed it");
	for (int i = 0; i < 2; i++) {
		th_reply_free(&replies[i]);
		th_close(fds[i]);
	}
	free(slow);
	free(bulk);
}
END_TEST

/* ---- The connection cap --------------------------------------------------- */

START_TEST(connection_cap_makes_the_next_client_wait_its_turn)
{
	th_about("sem_acquire", "with -m 2, a third client is not served while two are "
		 "connected, and is served as soon as one of them leaves");
	static const char *const args[] = { "-m", "2", NULL };
	static const struct th_launch launch = { .args = args };
	struct th_server *server = th_start(&launch);
	int first = th_connect(server);
	int second = th_connect(server);
	th_expect_echo(first, "one", 3);
	th_expect_echo(second, "two", 3);
	int third = th_connect(server);	/* the kernel completes the handshake */
	if (send(third, "three", 5, 0) != 5)
		th_fail("send: %s", strerror(errno));
	th_expect_silence(third, 300, "the server already serves its maximum of 2 clients");
	th_close(first);
	/* Served as soon as the first client's coroutine has ended: 2 s is ample. */
	struct th_exchange ex = { .want = 5, .timeout_ms = 2000 };
	struct th_reply reply;
	th_exchange(third, &ex, &reply);
	th_check_echo("three", 5, &reply);
	th_reply_free(&reply);
	th_close(second);
	th_close(third);
}
END_TEST

/* ---- Graceful shutdown ---------------------------------------------------- */

START_TEST(shutdown_drains_in_flight_echoes_without_losing_a_byte)
{
	th_about("drain", "on SIGTERM the server must let a connected client finish: every "
		 "byte it sends after the signal is still echoed, then it exits 0");
	static const char *const args[] = { "-g", "30", NULL };
	static const struct th_launch launch = { .args = args };
	struct th_server *server = th_start(&launch);
	enum { HALF = 64 * KIB };
	unsigned char *data = th_payload(2 * HALF, 44);
	int fd = th_connect(server);
	struct th_exchange before = { .send = data, .send_len = HALF, .want = HALF };
	struct th_reply first;
	th_exchange(fd, &before, &first);
	th_check_echo(data, HALF, &first);
	th_reply_free(&first);

	signal_server(server, SIGTERM);
	th_sleep_ms(100);	/* let the server take the signal in */
	struct th_exchange after = { .send = data + HALF, .send_len = HALF, .chunk = 4 * KIB,
				     .pause_ms = 20, .shut_wr = true, .until_eof = true };
	struct th_reply second;
	th_exchange(fd, &after, &second);
	th_check_echo(data + HALF, HALF, &second);
	if (!second.eof)
		th_fail("after the half-close the server did not close the connection");
	th_reply_free(&second);
	th_close(fd);
	free(data);
	th_stop(server);
	if (strstr(th_server_stderr(server), "1 connected at the signal, of which 1 finished") == NULL)
		th_fail("expected a summary on stderr saying \"1 connected at the signal, of which 1 "
			"finished ...\"; stderr was:\n%s", th_server_stderr(server));
}
END_TEST

/* Connect with a plain blocking socket; the errno of a failure, or 0. */
static int try_connect(const struct th_server *server)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	if (getaddrinfo(server->host, server->port, &hints, &ai) != 0)
		th_fail("cannot resolve %s:%s", server->host, server->port);
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		th_fail("socket: %s", strerror(errno));
	int err = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
	close(fd);
	freeaddrinfo(ai);
	return err;
}

START_TEST(shutdown_stops_accepting_at_once)
{
	th_about("drain", "on SIGTERM the server closes its listening socket first: a new "
		 "client is refused while a connected one is still being served");
	static const char *const args[] = { "-g", "30", NULL };
	static const struct th_launch launch = { .args = args };
	struct th_server *server = th_start(&launch);
	int fd = th_connect(server);
	th_expect_echo(fd, "before", 6);
	signal_server(server, SIGTERM);
	int err = 0;
	for (int waited = 0; waited < th_ms(3000) && err == 0; waited += 50) {
		err = try_connect(server);
		if (err == 0)
			th_sleep_ms(50);
	}
	/* Refused, or reset when it reached the queue just as it closed. */
	if (err != ECONNREFUSED && err != ECONNRESET)
		th_fail("after SIGTERM a new connection should be refused (the listening socket "
			"closed); connect %s", err == 0 ? "kept succeeding" : strerror(err));
	th_expect_echo(fd, "after", 5);
	th_close(fd);
	th_stop(server);
}
END_TEST

START_TEST(shutdown_closes_the_rest_at_the_end_of_the_grace_period)
{
	th_about("drain", "a client still connected when the grace period (-g 1) ends is "
		 "closed, and the server exits 0 saying so");
	static const char *const args[] = { "-g", "1", NULL };
	static const struct th_launch launch = { .args = args };
	struct th_server *server = th_start(&launch);
	int stays = th_connect(server);
	th_expect_echo(stays, "staying", 7);
	signal_server(server, SIGTERM);
	th_expect_silence(stays, 300, "the grace period of 1 s has not ended yet");
	th_expect_eof(stays);
	th_close(stays);
	th_stop(server);
	if (strstr(th_server_stderr(server), "1 were closed at its end") == NULL)
		th_fail("expected a summary on stderr saying \"... 1 were closed at its end\"; "
			"stderr was:\n%s", th_server_stderr(server));
}
END_TEST

/* ---- The command line ----------------------------------------------------- */

START_TEST(bad_flag_values_are_usage_errors)
{
	th_about("", "-t, -m and -g take numbers in range: anything else exits 2 with the "
		 "usage line");
	static const char *const bad[][3] = {
		{ "-t", "-1", NULL }, { "-m", "0", NULL }, { "-g", "soon", NULL },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char err[512];
		int status = th_run_server(bad[i], err, sizeof err);
		if (status != 2 || strstr(err, "usage") == NULL)
			th_fail("echo_server %s %s: expected exit status 2 and the usage line; got "
				"%d and:\n%s", bad[i][0], bad[i][1], status, err);
	}
}
END_TEST

static Suite *shutdown_suite(void)
{
	Suite *s = th_suite("07-timeouts-sync server");
	TCase *tc = th_tcase(s, "idle_timeout", "");
	th_tcase_deadline(tc, 10);
	th_test(tc, idle_timeout_closes_the_idle_client_and_nobody_else);
	th_test(tc, a_slowloris_is_closed_without_stalling_others);
	th_test(tc, bad_flag_values_are_usage_errors);

	tc = th_tcase(s, "cap", "sem_acquire");
	th_test(tc, connection_cap_makes_the_next_client_wait_its_turn);

	tc = th_tcase(s, "shutdown", "drain");
	th_tcase_deadline(tc, 10);
	th_test(tc, shutdown_drains_in_flight_echoes_without_losing_a_byte);
	th_test(tc, shutdown_stops_accepting_at_once);
	th_test(tc, shutdown_closes_the_rest_at_the_end_of_the_grace_period);
	return s;
}

int main(void)
{
	return th_run(shutdown_suite());
}
