/* A sample private test, for grading only (make grade; tools/handout.sh
 * leaves tests/private out of every handout). Students never see it: it
 * checks what the public tests check, in a way they cannot tune their code
 * to. Put a chapter's private tests in tests/private/NN-slug/test_*.c. */
#define _GNU_SOURCE

#include <stdlib.h>

#include "harness.h"

START_TEST(a_line_split_at_every_byte_comes_back_whole)
{
	th_about("echo_loop write_all", "every byte the client sends must come back, whatever "
		 "pieces it arrives in");
	struct th_server *server = th_start(NULL);
	int fd = th_connect(server);
	static const char line[] = "the quick brown fox jumps over the lazy dog\n";
	struct th_exchange ex = { .send = line, .send_len = sizeof line - 1, .chunk = 1,
				  .want = sizeof line - 1 };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	th_check_echo(line, sizeof line - 1, &reply);
	th_reply_free(&reply);
	th_close(fd);
}
END_TEST

int main(void)
{
	Suite *s = th_suite("01-blocking private");
	TCase *tc = th_tcase(s, "private", "echo_loop");
	th_test(tc, a_line_split_at_every_byte_comes_back_whole);
	return th_run(s);
}
