/* Chapter 09, going further: the io_uring hub with hub_uring_multishot(),
 * where each socket is read by one multishot recv into the hub's ring of
 * buffers, and green_read() copies out of them. What must hold: every byte
 * arrives once and in order, whatever sizes the reads ask for; the end of the
 * stream and a deadline behave as with one recv per read (a close too: in
 * test_uring, beside the same test without multishot); a socket whose data
 * nobody reads cannot take the whole ring; when the ring runs dry, reads
 * still get their data, the plain way; and data waiting in a stream makes
 * its socket readable.
 * Assertions run on the main stack, after co_run() returns. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "co.h"
#include "green.h"
#include "harness.h"
#include "hub.h"
#include "sched.h"

static void run_all(void)
{
	if (co_run() != 0)
		th_fail("co_run() returned -1: the coroutines deadlocked (see stderr)");
}

static void open_multishot_hub(void)
{
	hub_uring_multishot(true);
	int opened = hub_open(HUB_URING);
	hub_uring_multishot(false);
	if (opened < 0)
		th_fail("hub_open(HUB_URING): %s", strerror(errno));
}

/* Byte i of a test's stream: every value, in an order that a lost, doubled
 * or reordered chunk would break. */
static unsigned char byte_at(size_t i)
{
	return (unsigned char)(i * 7 + i / 256);
}

/* Checks got[0..len) against the stream from offset from; th_fail()s with
 * the first difference. */
static void expect_stream(const unsigned char *got, size_t len, size_t from, const char *what)
{
	for (size_t i = 0; i < len; i++)
		if (got[i] != byte_at(from + i))
			th_fail("%s: byte %zu of the stream is 0x%02x, expected 0x%02x: data was "
				"lost, doubled or reordered", what, from + i, got[i], byte_at(from + i));
}

/* Write len bytes of the stream to fd, blocking (fd is the test's end). */
static void write_stream(int fd, size_t from, size_t len)
{
	unsigned char chunk[4096];
	while (len > 0) {
		size_t n = len < sizeof chunk ? len : sizeof chunk;
		for (size_t i = 0; i < n; i++)
			chunk[i] = byte_at(from + i);
		ssize_t put = write(fd, chunk, n);
		if (put < 0 && errno == EAGAIN) {
			co_sleep(1);
			continue;
		}
		if (put <= 0)
			th_fail("write to the test's end of the socket: %s", strerror(errno));
		from += (size_t)put;
		len -= (size_t)put;
	}
}

/* ---- Every byte, once, in order ---------------------------------------- */

enum { STREAM_BYTES = 200 * 1000 };
static int pair[2];
static unsigned char received[STREAM_BYTES];
static struct {
	size_t got;
	ssize_t last;
	int err;
} reading;

static void read_in_odd_sizes(void *arg)
{
	(void)arg;
	static const size_t sizes[] = { 1, 7, 700, 2048, 3000, 13 };
	for (int i = 0; reading.got < STREAM_BYTES; i++) {
		size_t want = sizes[i % 6];
		if (want > STREAM_BYTES - reading.got)
			want = STREAM_BYTES - reading.got;
		ssize_t n = green_read(pair[0], received + reading.got, want);
		if (n <= 0) {
			reading.last = n;
			reading.err = errno;
			return;
		}
		reading.got += (size_t)n;
	}
	reading.last = green_read(pair[0], received, 1);	/* the end */
	reading.err = errno;
}

static void write_the_stream_then_end(void *arg)
{
	(void)arg;
	write_stream(pair[1], 0, STREAM_BYTES);
	shutdown(pair[1], SHUT_WR);
}

START_TEST(multishot_reads_get_every_byte_once_in_order_then_the_end)
{
	th_about("complete", "with hub_uring_multishot(), reads of 1 to 3000 bytes must get a "
		 "200 KB stream of every byte value exactly as sent, then 0 at its end");
	open_multishot_hub();
	memset(&reading, 0, sizeof reading);
	th_socket_pair(pair);
	fcntl(pair[1], F_SETFL, O_NONBLOCK);
	co_spawn(read_in_odd_sizes, NULL);
	co_spawn(write_the_stream_then_end, NULL);
	run_all();
	struct hub_uring_stats stats = hub_uring_stats();
	hub_close();
	close(pair[0]);
	close(pair[1]);
	if (reading.got != STREAM_BYTES || reading.last != 0)
		th_fail("the reads got %zu of %d bytes, then returned %zd (%s); expected all, then 0",
			reading.got, STREAM_BYTES, reading.last,
			reading.last < 0 ? strerror(reading.err) : "no error");
	expect_stream(received, STREAM_BYTES, 0, "read in sizes of 1 to 3000 bytes");
	if (stats.completed <= stats.submitted)
		th_fail("%llu requests submitted for %llu completions: the reads did not go through "
			"a multishot recv", (unsigned long long)stats.submitted,
			(unsigned long long)stats.completed);
}
END_TEST

/* ---- A deadline ----------------------------------------------------------- */

static void read_past_a_deadline_then_again(void *arg)
{
	(void)arg;
	char buf[16];
	reading.last = green_read_until(pair[0], buf, sizeof buf, co_deadline_after(20));
	reading.err = errno;
	ssize_t n = green_read(pair[0], received, 16);
	reading.got = n > 0 ? (size_t)n : 0;
}

static void write_late(void *arg)
{
	(void)arg;
	co_sleep(50);
	write_stream(pair[1], 0, 10);
}

START_TEST(multishot_a_read_past_its_deadline_fails_and_loses_nothing)
{
	th_about("complete", "with hub_uring_multishot(), a read past its deadline must fail "
		 "with ETIMEDOUT, and the next read get the bytes that came later");
	open_multishot_hub();
	memset(&reading, 0, sizeof reading);
	th_socket_pair(pair);
	co_spawn(read_past_a_deadline_then_again, NULL);
	co_spawn(write_late, NULL);
	run_all();
	hub_close();
	close(pair[0]);
	close(pair[1]);
	if (reading.last != -1 || reading.err != ETIMEDOUT)
		th_fail("a read with a 20-ms deadline of a silent socket returned %zd (%s); expected "
			"-1 with ETIMEDOUT", reading.last,
			reading.last < 0 ? strerror(reading.err) : "no error");
	if (reading.got != 10)
		th_fail("the next read got %zu bytes of the 10 written 50 ms in", reading.got);
	expect_stream(received, 10, 0, "the read after the deadline");
}
END_TEST

/* ---- Sockets whose data nobody reads, and a ring that runs dry ----------- */

/* Many sockets, each sent more than it reads for a while: together they
 * would need several times the ring's 1,024 buffers. */
enum { SOCKETS = 300, PER_SOCKET = 64 * 1024, SLOW_MS = 100 };
static int pairs[SOCKETS][2];
static size_t done[SOCKETS];
static int failures;

static void read_one_byte_then_pause_then_all(void *arg)
{
	intptr_t i = (intptr_t)arg;
	unsigned char buf[4096];
	ssize_t n = green_read(pairs[i][0], buf, 1);	/* arms the recv */
	if (n != 1 || buf[0] != byte_at(0)) {
		failures++;
		return;
	}
	/* Meanwhile the rest arrives, and fills the ring. The last sockets
	 * read first: theirs came when the ring was dry. */
	co_sleep(SLOW_MS + (SOCKETS - 1 - (int)i) / 4);
	size_t got = 1;
	while (got < PER_SOCKET) {
		size_t want = PER_SOCKET - got < sizeof buf ? PER_SOCKET - got : sizeof buf;
		n = green_read(pairs[i][0], buf, want);
		if (n <= 0) {
			failures++;
			return;
		}
		for (ssize_t k = 0; k < n; k++)
			if (buf[k] != byte_at(got + (size_t)k)) {
				failures++;
				return;
			}
		got += (size_t)n;
	}
	done[i] = got;
}

static void write_to_every_socket(void *arg)
{
	(void)arg;
	for (int i = 0; i < SOCKETS; i++)
		write_stream(pairs[i][1], 0, 1);
	co_sleep(10);
	for (int i = 0; i < SOCKETS; i++)
		write_stream(pairs[i][1], 1, PER_SOCKET - 1);
}

START_TEST(multishot_sockets_read_late_keep_their_data_when_the_ring_runs_dry)
{
	th_about("complete submit_and_park", "with hub_uring_multishot(), 300 sockets each sent "
		 "64 KB that they read only 100 ms later (19 MB, the ring holds 2 MB) must each "
		 "still read it all, in order: a socket holds at most a few buffers, and reads "
		 "go the plain way when the ring is low");
	open_multishot_hub();
	memset(done, 0, sizeof done);
	failures = 0;
	for (int i = 0; i < SOCKETS; i++) {
		th_socket_pair(pairs[i]);
		fcntl(pairs[i][1], F_SETFL, O_NONBLOCK);
	}
	for (intptr_t i = 0; i < SOCKETS; i++)
		co_spawn(read_one_byte_then_pause_then_all, (void *)i);
	co_spawn(write_to_every_socket, NULL);
	run_all();
	hub_close();
	int short_ones = 0;
	for (int i = 0; i < SOCKETS; i++) {
		close(pairs[i][0]);
		close(pairs[i][1]);
		short_ones += done[i] != PER_SOCKET;
	}
	if (short_ones > 0)
		th_fail("%d of the %d sockets did not read their 64 KB intact (%d reads failed or "
			"found wrong bytes)", short_ones, SOCKETS, failures);
}
END_TEST

/* ---- Waiting for readability ------------------------------------------ */

static struct {
	ssize_t first;
	int waited;
	int err;
} waiting;

/* Reads one byte of the ten sent: the other nine wait in the stream, and
 * the socket itself is empty. */
static void read_one_then_wait_readable(void *arg)
{
	(void)arg;
	char c;
	waiting.first = green_read(pair[0], &c, 1);
	waiting.waited = hub_wait_fd(pair[0], HUB_READ, co_deadline_after(200));
	waiting.err = errno;
}

START_TEST(multishot_data_waiting_in_the_stream_makes_the_socket_readable)
{
	th_about("complete submit_and_park", "with hub_uring_multishot(), hub_wait_fd(HUB_READ) "
		 "must return at once when the socket's stream holds data already received, "
		 "though the socket itself is empty");
	open_multishot_hub();
	memset(&waiting, 0, sizeof waiting);
	th_socket_pair(pair);
	write_stream(pair[1], 0, 10);
	co_spawn(read_one_then_wait_readable, NULL);
	run_all();
	hub_close();
	close(pair[0]);
	close(pair[1]);
	if (waiting.first != 1 || waiting.waited != 0)
		th_fail("a read of 1 byte of the 10 sent returned %zd; then hub_wait_fd(HUB_READ) "
			"returned %d (%s), expected 0 at once: the other 9 bytes were waiting in the "
			"stream", waiting.first, waiting.waited,
			waiting.waited < 0 ? strerror(waiting.err) : "no error");
}
END_TEST

/* ---- Not a socket ------------------------------------------------------- */

static void read_the_pipe(void *arg)
{
	(void)arg;
	reading.last = green_read(pair[0], received, 16);
	reading.err = errno;
}

START_TEST(multishot_a_pipe_is_read_the_plain_way)
{
	th_about("submit_and_park complete", "with hub_uring_multishot(), a read of a pipe (no "
		 "socket, no recv) must still return its bytes");
	open_multishot_hub();
	memset(&reading, 0, sizeof reading);
	if (pipe2(pair, O_NONBLOCK) < 0)
		th_fail("pipe2: %s", strerror(errno));
	write_stream(pair[1], 0, 5);
	co_spawn(read_the_pipe, NULL);
	run_all();
	hub_close();
	close(pair[0]);
	close(pair[1]);
	if (reading.last != 5)
		th_fail("a read of a pipe holding 5 bytes returned %zd (%s)", reading.last,
			reading.last < 0 ? strerror(reading.err) : "no error");
	expect_stream(received, 5, 0, "the pipe");
}
END_TEST

int main(void)
{
	Suite *s = th_suite("io_uring hub, multishot recv");
	bool listing = getenv("TH_LIST_TESTS") != NULL;
	if (hub_open(HUB_URING) == 0 || listing) {
		hub_close();
		TCase *tc = th_tcase(s, "multishot", "complete submit_and_park");
		th_tcase_deadline(tc, 2);
		th_test(tc, multishot_reads_get_every_byte_once_in_order_then_the_end);
		th_test(tc, multishot_a_read_past_its_deadline_fails_and_loses_nothing);
		th_test(tc, multishot_sockets_read_late_keep_their_data_when_the_ring_runs_dry);
		th_test(tc, multishot_data_waiting_in_the_stream_makes_the_socket_readable);
		th_test(tc, multishot_a_pipe_is_read_the_plain_way);
	} else {
		fprintf(stderr, "test_uring_multishot: SKIPPED the 5 io_uring tests: io_uring_setup: %s "
			"(a kernel before 6.1, qemu-user, /proc/sys/kernel/io_uring_disabled above 0, "
			"or a seccomp profile)\n", strerror(errno));
	}
	return th_run(s);
}
