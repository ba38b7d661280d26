/* The echo, tested against every chapter's server: every byte value, large
 * and tiny messages, many small writes, half-close; short and interrupted
 * reads and writes under the short-I/O shim; and the command line. */
#define _GNU_SOURCE

#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "promises.h"

enum { MIB = 1024 * 1024 };

static void echo_text(int fd, const char *text)
{
	th_expect_echo(fd, text, strlen(text));
}

/* ---- The echo ------------------------------------------------------------ */

START_TEST(uppercases_ascii_letters_only)
{
	th_about(th_promise()->echo_todos, "the reply is not the request with a..z uppercased");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	echo_text(fd, "Hello, World! abc xyz ABC XYZ 0123456789 {|}~ `@[\n");
	th_close(fd);
}
END_TEST

START_TEST(echoes_every_byte_value)
{
	th_about(th_promise()->echo_todos, "bytes outside a..z must come back unchanged (NUL and 0x80..0xff "
		 "too: do not use string functions or toupper() on binary data)");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	unsigned char *all = th_payload(256, 0);
	th_expect_echo(fd, all, 256);
	free(all);
	th_close(fd);
}
END_TEST

START_TEST(echoes_a_single_byte)
{
	th_about(th_promise()->echo_todos, "the server waits for a full buffer before it answers");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	echo_text(fd, "x");
	th_close(fd);
}
END_TEST

START_TEST(echoes_one_mebibyte_sent_in_one_go)
{
	th_about(th_promise()->echo_todos, "the echo loop stops after one read, "
		 "or the server drops bytes it read but did not write");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	unsigned char *big = th_payload(MIB, 3);
	th_expect_echo(fd, big, MIB);
	free(big);
	th_close(fd);
}
END_TEST

START_TEST(echoes_many_small_writes_in_order)
{
	th_about(th_promise()->echo_todos, "bytes were lost or reordered between reads");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	unsigned char *data = th_payload(3000, 4);
	struct th_exchange ex = { .send = data, .send_len = 3000, .chunk = 3, .want = 3000 };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	th_check_echo(data, 3000, &reply);
	th_reply_free(&reply);
	free(data);
	th_close(fd);
}
END_TEST

START_TEST(half_close_gets_every_byte_then_eof)
{
	th_about(th_promise()->echo_todos, "when read() returns 0 the client has finished sending: "
		 "everything it sent must be echoed, and then the server closes");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	unsigned char *data = th_payload(100000, 5);
	struct th_exchange ex = { .send = data, .send_len = 100000, .shut_wr = true,
				  .until_eof = true };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	th_check_echo(data, 100000, &reply);
	if (!reply.eof)
		th_fail("after the client half-closed and got its echo, the server should close "
			"the connection; it kept it open");
	th_reply_free(&reply);
	free(data);
	th_close(fd);
}
END_TEST

/* ---- Short and interrupted I/O, under the short-I/O shim ------------------- */

static const struct th_launch short_io = { .short_io = true };

START_TEST(echoes_through_short_reads_and_writes)
{
	th_about(th_promise()->retry_todos, "write() moved fewer bytes than asked and the rest were never "
		 "written: a write must be retried until every byte is out; or a read() or write() "
		 "that failed with EINTR was taken as an error");
	struct th_server *server = th_start(&short_io);
	int fd = th_connect(server);
	unsigned char *data = th_payload(64 * 1024, 6);
	th_expect_echo(fd, data, 64 * 1024);
	free(data);
	th_close(fd);
}
END_TEST

START_TEST(echoes_every_byte_value_through_eintr)
{
	th_about(th_promise()->retry_todos, "a call that failed with EINTR was treated as an error: "
		 "EINTR means \"interrupted before doing anything, try again\"");
	struct th_server *server = th_start(&short_io);
	for (int i = 0; i < 3; i++) {
		int fd = th_connect(server);
		unsigned char *all = th_payload(256, 0);
		th_expect_echo(fd, all, 256);
		free(all);
		th_close(fd);
	}
}
END_TEST

/* ---- The command line (common/cli.c, no TODO) ----------------------------- */

START_TEST(bad_arguments_exit_2_with_usage)
{
	th_about("", "common/cli.c should reject this command line");
	static const char *const bad[][3] = {
		{ "-p", "not-a-port", NULL }, { "-p", "70000", NULL }, { "-x", NULL }, { "extra", NULL },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char err[1024];
		int status = th_run_server(bad[i], err, sizeof err);
		if (status != 2 || strstr(err, "usage:") == NULL)
			th_fail("echo_server %s %s: expected exit status 2 and a usage line, "
				"got status %d and stderr:\n%s", bad[i][0], bad[i][1] ? bad[i][1] : "",
				status, err);
	}
}
END_TEST

START_TEST(unusable_address_exits_1_with_reason)
{
	th_about("", "a failure to listen must print \"echo_server: <what>: <why>\" and exit 1");
	static const char *const args[] = { "-H", "192.0.2.1", "-p", "0", NULL };
	char err[1024];
	int status = th_run_server(args, err, sizeof err);
	if (status != 1 || strstr(err, "192.0.2.1") == NULL)
		th_fail("listening on an address this machine does not have should fail with "
			"status 1 and a message naming it; got status %d and stderr:\n%s", status, err);
}
END_TEST

static Suite *echo_suite(void)
{
	Suite *s = th_suite("echo");
	TCase *tc = th_tcase(s, "echo", th_promise()->echo_todos);
	th_test(tc, uppercases_ascii_letters_only);
	th_test(tc, echoes_every_byte_value);
	th_test(tc, echoes_a_single_byte);
	th_test(tc, echoes_one_mebibyte_sent_in_one_go);
	th_test(tc, echoes_many_small_writes_in_order);
	th_test(tc, half_close_gets_every_byte_then_eof);

	tc = th_tcase(s, "short_io", th_promise()->retry_todos);
	th_test(tc, echoes_through_short_reads_and_writes);
	th_test(tc, echoes_every_byte_value_through_eintr);

	tc = th_tcase(s, "command_line", "");
	th_test(tc, bad_arguments_exit_2_with_usage);
	th_test(tc, unusable_address_exits_1_with_reason);
	return s;
}

int main(void)
{
	return th_run(echo_suite());
}
