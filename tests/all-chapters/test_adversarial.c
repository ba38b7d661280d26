/* The adversarial suite: hostile clients against every chapter's server.
 * Whatever a client does (reset mid-write, half-close, never read, trickle,
 * send megabytes, exhaust the server's file descriptors), the server must not
 * crash, must not lose a byte, and, from chapter 02 on, must keep serving the
 * other clients meanwhile. */
#define _GNU_SOURCE

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "harness.h"
#include "promises.h"

enum { KIB = 1024, MIB = 1024 * 1024 };

/* A fresh client is echoed correctly: the server is alive and accepting. */
static void still_serves(struct th_server *server)
{
	int fd = th_connect(server);
	th_expect_echo(fd, "still serving", strlen("still serving"));
	th_close(fd);
}

/* On a concurrent server, a client that is connected and served while the
 * hostile one does its worst; -1 on a server that serves one at a time. */
static int bystander(struct th_server *server)
{
	if (th_promise()->serial)
		return -1;
	int fd = th_connect(server);
	th_expect_echo(fd, "bystander", strlen("bystander"));
	return fd;
}

static void bystander_still_served(int fd)
{
	if (fd < 0)
		return;
	unsigned char *data = th_payload(64 * KIB, 11);
	th_expect_echo(fd, data, 64 * KIB);
	free(data);
	th_close(fd);
}

START_TEST(reset_in_the_middle_of_a_write_harms_nobody)
{
	th_about(th_promise()->echo_todos, "a write to a reset connection fails with ECONNRESET or EPIPE: drop that "
		 "client, keep serving the others");
	struct th_server *server = th_start(NULL);
	int other = bystander(server);
	int rude = th_connect(server);
	th_send_without_reading(rude, 16 * MIB);	/* the server is now stuck writing to it */
	th_reset(rude);
	bystander_still_served(other);
	still_serves(server);
}
END_TEST

START_TEST(half_close_gets_every_byte_then_eof)
{
	th_about(th_promise()->echo_todos, "after read() returns 0, everything received must still be echoed, "
		 "then the connection closed");
	struct th_server *server = th_start(NULL);
	int other = bystander(server);
	int fd = th_connect(server);
	unsigned char *data = th_payload(MIB, 12);
	struct th_exchange ex = { .send = data, .send_len = MIB, .shut_wr = true, .until_eof = true };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	th_check_echo(data, MIB, &reply);
	if (!reply.eof)
		th_fail("the client half-closed and got its echo, but the server did not close");
	th_reply_free(&reply);
	free(data);
	th_close(fd);
	bystander_still_served(other);
}
END_TEST

START_TEST(client_that_never_reads_gets_back_pressure)
{
	th_about(th_promise()->echo_todos, "a server that keeps reading from a client whose echo it cannot write "
		 "ends up buffering without bound: stop reading from that client until it "
		 "reads");
	struct th_server *server = th_start(NULL);
	int other = bystander(server);
	still_serves(server);	/* so the server's buffers exist before we measure */
	long before = th_server_rss_kib(server);

	int hog = th_connect(server);
	size_t sent = th_send_without_reading(hog, 16 * MIB);
	long grown = th_server_rss_kib(server) - before;
	if (grown > 8 * 1024)
		th_fail("the server's resident memory grew by %ld KiB while a client sent %zu bytes "
			"and read nothing", grown, sent);
	bystander_still_served(other);
	th_reset(hog);
	still_serves(server);
}
END_TEST

START_TEST(trickling_client_is_echoed_and_stalls_nobody)
{
	th_about(th_promise()->echo_todos, "a client sending one byte at a time must get every byte back, "
		 "and must not hold up the others");
	struct th_server *server = th_start(NULL);
	unsigned char *slow = th_payload(200, 13);
	unsigned char *fast = th_payload(64 * KIB, 14);
	int fds[2] = { th_connect(server), -1 };
	struct th_exchange ex[2] = {
		{ .send = slow, .send_len = 200, .chunk = 1, .pause_ms = 5, .want = 200 },
		{ .send = fast, .send_len = 64 * KIB, .want = 64 * KIB },
	};
	struct th_reply replies[2];
	if (!th_promise()->serial) {
		fds[1] = th_connect(server);
		th_exchange_many(fds, ex, replies, 2);
		th_check_echo(fast, 64 * KIB, &replies[1]);
		th_reply_free(&replies[1]);
		th_close(fds[1]);
	} else {
		th_exchange(fds[0], &ex[0], &replies[0]);
	}
	th_check_echo(slow, 200, &replies[0]);
	th_reply_free(&replies[0]);
	th_close(fds[0]);
	free(slow);
	free(fast);
}
END_TEST

START_TEST(every_byte_value_in_odd_sized_pieces)
{
	th_about(th_promise()->echo_todos, "bytes 0x00 and 0x80..0xff must pass unchanged; do not treat the data "
		 "as a C string");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	unsigned char *data = th_payload(256 * KIB, 0);
	struct th_exchange ex = { .send = data, .send_len = 256 * KIB, .chunk = 999,
				  .want = 256 * KIB };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	th_check_echo(data, 256 * KIB, &reply);
	th_reply_free(&reply);
	free(data);
	th_close(fd);
}
END_TEST

START_TEST(sixteen_mib_echoed_whole_while_others_chat)
{
	th_about(th_promise()->echo_todos, "a large transfer must come back whole, and must not stall small ones");
	enum { CHATTERS = 8, BIG = 16 * MIB, SMALL = 4 * KIB };
	struct th_server *server = th_start(NULL);
	unsigned char *big = th_payload(BIG, 15);
	unsigned char *small = th_payload(SMALL, 16);
	int fds[1 + CHATTERS];
	struct th_exchange ex[1 + CHATTERS];
	struct th_reply replies[1 + CHATTERS];
	ex[0] = (struct th_exchange){ .send = big, .send_len = BIG, .want = BIG, .timeout_ms = 20000 };
	for (int i = 1; i <= CHATTERS; i++)
		ex[i] = (struct th_exchange){ .send = small, .send_len = SMALL, .chunk = 64,
					      .pause_ms = 1, .want = SMALL };

	if (!th_promise()->serial) {
		for (int i = 0; i <= CHATTERS; i++)
			fds[i] = th_connect(server);
		th_exchange_many(fds, ex, replies, 1 + CHATTERS);
	} else {
		for (int i = 0; i <= CHATTERS; i++) {
			fds[i] = th_connect(server);
			th_exchange(fds[i], &ex[i], &replies[i]);
			th_close(fds[i]);
			fds[i] = -1;
		}
	}
	for (int i = 0; i <= CHATTERS; i++) {
		th_check_echo(i == 0 ? big : small, i == 0 ? BIG : SMALL, &replies[i]);
		th_reply_free(&replies[i]);
		if (fds[i] >= 0)
			th_close(fds[i]);
	}
	free(big);
	free(small);
}
END_TEST

/* Wait until the server's kernel has taken all we sent, our FIN included
 * (SIOCOUTQ counts what is not yet acknowledged, the FIN as one byte). */
static void wait_until_delivered(int fd)
{
	for (int waited = 0; waited < th_ms(5000); waited++) {
		int unacked;
		if (ioctl(fd, SIOCOUTQ, &unacked) < 0)
			th_fail("ioctl SIOCOUTQ: %s", strerror(errno));
		if (unacked == 0)
			return;
		th_sleep_ms(1);
	}
	th_fail("the server did not take the last of our data within %d ms", th_ms(5000));
}

START_TEST(clients_that_leave_without_reading_raise_no_sigpipe)
{
	th_about(th_promise()->echo_todos, "writing to a client that has gone raises SIGPIPE, whose default action "
		 "kills the server: ignore it (or use MSG_NOSIGNAL) and handle EPIPE");
	/* The short-I/O shim makes the server echo a few bytes per call, so it
	 * is still busy writing when the client has gone. */
	static const struct th_launch slow = { .short_io = true };
	struct th_server *server = th_start(&slow);
	int other = bystander(server);
	for (int i = 0; i < 3; i++) {
		/* Our data and our FIN reach the server, whose socket is then in
		 * CLOSE_WAIT; we leave with its echo unread, so our close sends an
		 * RST. An RST in CLOSE_WAIT makes the server's next write fail
		 * with EPIPE: the error that raises SIGPIPE. */
		int gone = th_connect(server);
		th_send_without_reading(gone, 96 * 1024);
		if (shutdown(gone, SHUT_WR) < 0)
			th_fail("the server dropped a client that was still sending (shutdown: %s); "
				"did a read() that failed with EINTR end its echo loop?", strerror(errno));
		wait_until_delivered(gone);
		th_close(gone);
	}
	bystander_still_served(other);
	still_serves(server);
}
END_TEST

/* Over one second of nothing to do but accept() failing, the server must not
 * burn the CPU retrying. */
static void check_not_spinning(struct th_server *server)
{
	if (th_promise()->spins_when_idle)
		return;
	long before = th_server_cpu_ms(server);
	th_sleep_ms(1000);
	long used = th_server_cpu_ms(server) - before;
	if (used > 500)
		th_fail("while out of file descriptors the server used %ld ms of CPU in one second: "
			"it retries accept() in a busy loop; pause, or stop polling the listening "
			"socket for a while", used);
}

START_TEST(running_out_of_file_descriptors_is_survived)
{
	th_about(th_promise()->echo_todos, "accept() failing with EMFILE must be reported and retried later, "
		 "without spinning and without dropping the connected clients");
	enum { CLIENTS = 40 };
	/* Serving one client at a time needs 5 descriptors (0-2, the listening
	 * socket, one client), so with 4 the very first accept() fails. */
	struct th_launch launch = { .fd_limit = th_promise()->serial ? 4 : 24 };
	struct th_server *server = th_start(&launch);
	/* A blocking accept() takes its descriptor number before it waits, so
	 * one already waiting when the limit came down still succeeds: let a
	 * first client through. */
	th_close(th_connect(server));
	int fds[CLIENTS];
	struct th_exchange ex[CLIENTS];
	struct th_reply replies[CLIENTS];
	int n = th_promise()->serial ? 1 : CLIENTS;
	for (int i = 0; i < n; i++) {
		fds[i] = th_connect(server);
		ex[i] = (struct th_exchange){ .send = "x", .send_len = 1, .want = 1, .timeout_ms = 1000 };
	}
	th_exchange_many(fds, ex, replies, (size_t)n);
	if (!th_stderr_shows(server, "Too many open files", 2000))
		th_fail("with RLIMIT_NOFILE at %d and %d clients, expected the server to report "
			"\"Too many open files\" on stderr; it wrote:\n%s", launch.fd_limit, n,
			th_server_stderr(server));
	check_not_spinning(server);
	if (th_promise()->serial) {
		th_reply_free(&replies[0]);
		th_close(fds[0]);
		return;
	}

	int served = 0;
	for (int i = 0; i < n; i++)
		served += replies[i].len == 1;
	if (served == 0 || served == n)
		th_fail("%d of %d clients were served with RLIMIT_NOFILE at %d; expected some, not all",
			served, n, launch.fd_limit);
	/* The served clients leave; the server must now accept the others, whose
	 * byte has been waiting all along. */
	for (int i = 0; i < n; i++) {
		if (replies[i].len == 1) {
			th_close(fds[i]);
			fds[i] = -1;
		}
		th_reply_free(&replies[i]);
	}
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		struct th_exchange rest = { .want = 1 };
		struct th_reply reply;
		th_exchange(fds[i], &rest, &reply);
		th_check_echo("x", 1, &reply);
		th_reply_free(&reply);
		th_close(fds[i]);
	}
	still_serves(server);
}
END_TEST

static Suite *adversarial_suite(void)
{
	Suite *s = th_suite("adversarial");
	TCase *tc = th_tcase(s, "hostile_clients", th_promise()->echo_todos);
	th_tcase_deadline(tc, 10);
	th_test(tc, reset_in_the_middle_of_a_write_harms_nobody);
	th_test(tc, half_close_gets_every_byte_then_eof);
	th_test(tc, client_that_never_reads_gets_back_pressure);
	th_test(tc, trickling_client_is_echoed_and_stalls_nobody);
	th_test(tc, every_byte_value_in_odd_sized_pieces);
	th_test(tc, sixteen_mib_echoed_whole_while_others_chat);
	th_test(tc, clients_that_leave_without_reading_raise_no_sigpipe);
	th_test(tc, running_out_of_file_descriptors_is_survived);
	return s;
}

int main(void)
{
	return th_run(adversarial_suite());
}
