/* Chapter 01's tests: the blocking server accepts clients one after another,
 * and serves one at a time. The echo itself, misbehaving clients and the
 * command line are tested for every chapter in tests/all-chapters. */
#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addr.h"
#include "harness.h"

/* How long a waiting client must hear nothing. Absence cannot be proven by
 * waiting, but a server that serves two clients at once answers in well under
 * a millisecond on loopback, so 300 ms of silence is unambiguous. */
enum { SILENCE_MS = 300 };

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

static void expect_logged(const struct th_server *server, const char *address, const char *what)
{
	char line[ADDR_TEXT_MAX + 32];
	snprintf(line, sizeof line, "%s %s", address, what);
	const char *log = th_server_stderr(server);
	if (strstr(log, line) == NULL)
		th_fail("with -v, expected the line \"%s\" on stderr (%s is the client's address); "
			"stderr has:\n%s", line, address, log);
}

/* Can this machine listen on the IPv6 loopback address? */
static bool have_ipv6_loopback(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in6 addr = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool ok = bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
	close(fd);
	return ok;
}

START_TEST(verbose_flag_logs_connects_and_disconnects)
{
	th_about("accept_loop", "with -v, log \"ADDRESS connected\" and \"ADDRESS disconnected\", "
		 "ADDRESS being what accept() filled in; its socklen_t must hold sizeof the "
		 "sockaddr_storage before every call, and an IPv6 address does not fit in a "
		 "struct sockaddr_in");
	/* IPv4, then IPv6 where the machine has it: an address buffer or a
	 * length that fits only IPv4 shows on the second. */
	static const char *const hosts[] = { "127.0.0.1", "::1" };
	for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
		if (i > 0 && !have_ipv6_loopback())
			break;
		const char *const args[] = { "-v", "-H", hosts[i], NULL };
		struct th_launch launch = { .args = args };
		struct th_server *server = th_start(&launch);
		char first[ADDR_TEXT_MAX], second[ADDR_TEXT_MAX];
		int fd = th_connect(server);
		th_client_address(fd, first, sizeof first);
		echo_text(fd, "log me");
		th_close(fd);
		/* The log line is written after the close, so have the server
		 * serve one more client: by then the first one's lines are in the
		 * log. */
		fd = th_connect(server);
		th_client_address(fd, second, sizeof second);
		echo_text(fd, "and me");
		expect_logged(server, first, "connected");
		expect_logged(server, first, "disconnected");
		expect_logged(server, second, "connected");
		th_close(fd);
		th_stop(server);
	}
}
END_TEST

START_TEST(connection_is_closed_once_the_client_is_done)
{
	th_about("accept_loop", "after serve_client() returns, close() the client's socket: until "
		 "then the client waits for the end of its echo, and each client leaks a "
		 "descriptor");
	struct th_server *server = th_start(NULL);
	for (int i = 0; i < 2; i++) {
		int fd = th_connect(server);
		struct th_exchange ex = { .send = "bye", .send_len = 3, .shut_wr = true,
					  .until_eof = true, .timeout_ms = 2000 };
		struct th_reply reply;
		th_exchange(fd, &ex, &reply);
		th_check_echo("bye", 3, &reply);
		if (!reply.eof)
			th_fail("client %d sent \"bye\", half-closed and got its echo, but the server "
				"did not close the connection within %d ms", i + 1, th_ms(2000));
		th_reply_free(&reply);
		th_close(fd);
	}
}
END_TEST

START_TEST(out_of_descriptors_the_server_waits_and_goes_on)
{
	th_about("accept_loop", "when accept() fails (here with EMFILE), call accept_failed(), "
		 "which exits only on a bug, and go back to accept(): the failed call gave no "
		 "client to serve or close");
	/* With 4 descriptors (0-2 and the listening socket) the server has no
	 * room for a client. */
	struct th_launch launch = { .fd_limit = 4 };
	struct th_server *server = th_start(&launch);
	/* A blocking accept() takes its descriptor number before it waits, so
	 * one already waiting when the limit came down still succeeds: let a
	 * first client through. */
	th_close(th_connect(server));
	int fd = th_connect(server);
	if (!th_stderr_shows(server, "Too many open files", 2000))
		th_fail("with RLIMIT_NOFILE at 4 and a client waiting, expected the server to report "
			"\"Too many open files\" on stderr; it wrote:\n%s", th_server_stderr(server));
	/* Descriptors are back (as when clients leave): the waiting client must
	 * now be served. */
	struct rlimit limit;
	if (prlimit(server->pid, RLIMIT_NOFILE, NULL, &limit) < 0)
		th_fail("prlimit: %s", strerror(errno));
	limit.rlim_cur = 64;
	if (prlimit(server->pid, RLIMIT_NOFILE, &limit, NULL) < 0)
		th_fail("prlimit: %s", strerror(errno));
	echo_text(fd, "served at last");
	th_close(fd);

	/* accept_failed() reported each EMFILE; nothing else went wrong. */
	static const char emfile[] = "echo_server: accept: Too many open files";
	for (const char *line = th_server_stderr(server); *line != '\0';) {
		size_t len = strcspn(line, "\n");
		if (len != strlen(emfile) || strncmp(line, emfile, len) != 0)
			th_fail("while out of descriptors, the server should only report that accept() "
				"failed, and retry; it also printed:\n%s", line);
		line += len + (line[len] == '\n');
	}
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
	th_test(tc, connection_is_closed_once_the_client_is_done);
	th_test(tc, out_of_descriptors_the_server_waits_and_goes_on);
	return s;
}

int main(void)
{
	return th_run(blocking_suite());
}
