/* Chapter 05's hub tests: timers in deadline order, sleep(0) as a yield,
 * join, coroutines parked on fds and woken by data (once per readiness), by a
 * close or by the peer leaving, one waiter per fd and direction, a reader and
 * a writer on one fd, waits with deadlines, timers that fire while sockets
 * keep the hub busy, every event of one epoll_wait dispatched, green_read's
 * hint to the hub, a table that moves under a waiter, a signal that
 * interrupts epoll_wait, "all asleep" reported instead of a hang, the dump,
 * ten thousand sleepers, an idle hub that sleeps in the kernel, the watchdog, and
 * the server with ten thousand clients at once. Assertions run on the main
 * stack, after co_run() returns. Each test case is tagged with exactly the
 * TODOs its tests need: a test waits with hub_wait_fd() itself, not through
 * green_read(), unless green_read() is what it checks. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "co.h"
#include "green.h"
#include "harness.h"
#include "hub.h"
#include "sched.h"	/* co_now_ms(), the clock of hub_wait_fd()'s deadlines */

static void run_all(void)
{
	if (co_run() != 0)
		th_fail("co_run() returned -1: the coroutines deadlocked (see stderr)");
}

/* A deadline ms from now, for hub_wait_fd(). */
static int64_t in_ms(int ms)
{
	return co_now_ms() + th_ms(ms);
}

/* A wait that does not end would hang the test. The guard turns it into a
 * failure: if it is still asleep after ms, it notes so and cancels every
 * coroutine, whose waits then fail with ECANCELED. A scenario that ends
 * well calls co_cancel_all() itself at the end, which wakes the guard. */
static void guard(void *arg)
{
	int ms = (int)(intptr_t)arg;
	if (co_sleep(th_ms(ms)) == 0) {
		th_note("[still waiting after %d ms] ", ms);
		co_cancel_all();
	}
}

/* realloc() may always move a block, and does whenever the memory after it
 * is taken; here it always does (this binary links with --wrap=realloc, so
 * the chapter's calls come here) and scribbles over the old block before
 * freeing it. Code that kept a pointer into the old block across a wait, as
 * hub_wait_fd()'s hint warns, then reads garbage on every run, not just
 * when the heap happens to be crowded. */
void *__real_realloc(void *old, size_t size);
void *__wrap_realloc(void *old, size_t size);

void *__wrap_realloc(void *old, size_t size)
{
	if (old == NULL || size == 0)
		return __real_realloc(old, size);
	void *moved = malloc(size);
	if (moved == NULL)
		return NULL;
	size_t had = malloc_usable_size(old);
	memcpy(moved, old, had < size ? had : size);
	memset(old, 0xa5, had);
	free(old);
	return moved;
}

/* ---- Timers and sleep ---------------------------------------------------- */

static void sleep_and_note(void *arg)
{
	long ms = (long)(intptr_t)arg;
	co_sleep(ms);
	char text[16];
	snprintf(text, sizeof text, "%ld ", ms);
	th_note("%s", text);
}

START_TEST(sleepers_wake_in_deadline_order)
{
	th_about("sift_up poll", "the timer heap does not keep the earliest deadline at its "
		 "root, or the hub does not wake expired timers");
	th_trace_start();
	static const long order[] = { 40, 10, 30, 0, 20, 50, 5 };
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
		co_spawn(sleep_and_note, (void *)(intptr_t)order[i]);
	run_all();
	th_expect_trace("0 5 10 20 30 40 50 ", "seven coroutines slept 40, 10, 30, 0, 20, 50, 5 ms");
}
END_TEST

static void yield_between(void *arg)
{
	const char *name = arg;
	for (int i = 0; i < 3; i++) {
		th_note("%s", name);
		co_sleep(0);
	}
}

START_TEST(sleep_zero_lets_the_others_run)
{
	th_about("", "co_sleep(0) must put the coroutine at the back of the run queue");
	th_trace_start();
	co_spawn(yield_between, "a");
	co_spawn(yield_between, "b");
	run_all();
	th_expect_trace("ababab", "two coroutines each noted a letter and slept 0, three times");
}
END_TEST

/* ---- Join ----------------------------------------------------------------- */

static void short_task(void *arg)
{
	(void)arg;
	co_sleep(20);
	th_note("task ");
}

static void joiner(void *arg)
{
	co_id task = *(co_id *)arg;
	if (co_join(task) == 0)
		th_note("joined ");
	if (co_join(task) == 0)
		th_note("again ");	/* it has ended: at once */
	if (co_join(co_self()) < 0 && errno == EDEADLK)
		th_note("self");
}

START_TEST(join_waits_for_the_end_and_then_returns_at_once)
{
	th_about("poll", "co_join() must park until the coroutine ends");
	th_trace_start();
	static co_id task;
	task = co_spawn(short_task, NULL);
	co_spawn(joiner, &task);
	run_all();
	th_expect_trace("task joined again self", "a coroutine joined one that slept 20 ms, twice, "
		     "then itself");
}
END_TEST

/* ---- Waiting on fds: hub_wait_fd() ------------------------------------------ */

static int pair[2], pair2[2];

static void note_errno(const char *what)
{
	th_note("%s failed (%s) ", what, strerror(errno));
}

/* Waits with hub_wait_fd() itself, then reads what came. */
static void waiting_reader(void *arg)
{
	int ms = (int)(intptr_t)arg;
	if (hub_wait_fd(pair[0], HUB_READ, ms > 0 ? in_ms(ms) : -1) < 0) {
		note_errno("the first wait");
		return;
	}
	char buf[16] = "";
	ssize_t got = read(pair[0], buf, sizeof buf - 1);
	th_note("%s", got > 0 ? buf : "read failed");
}

static void second_waiter(void *arg)
{
	(void)arg;
	/* With a deadline, so that a second waiter that parks cannot hang. */
	if (hub_wait_fd(pair[0], HUB_READ, in_ms(200)) < 0 && errno == EBUSY)
		th_note("busy ");
	else
		th_note("not busy (%s) ", strerror(errno));
	if (write(pair[1], "x", 1) != 1)	/* let the first one finish */
		th_note("write failed ");
}

START_TEST(second_waiter_on_the_same_fd_gets_ebusy)
{
	th_about("wait_fd poll", "two coroutines waiting to read one fd: dispatch() wakes one, "
		 "so the second must get EBUSY at once instead of taking the first one's place");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(waiting_reader, (void *)(intptr_t)300);
	co_spawn(second_waiter, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("busy x", "a coroutine waited to read an fd, and a second one tried to wait "
			"on it too, then wrote to it");
}
END_TEST

static void waiter_of_closed(void *arg)
{
	(void)arg;
	if (hub_wait_fd(pair[0], HUB_READ, -1) < 0 && errno == EBADF)
		th_note("woken with EBADF");
	else
		th_note("the wait returned without EBADF (%s)", strerror(errno));
}

static void closer(void *arg)
{
	(void)arg;
	green_close(pair[0]);
	th_note("closed ");
}

START_TEST(closing_an_fd_wakes_its_waiter)
{
	th_about("wait_fd", "a coroutine parked on an fd that another coroutine closes must be "
		 "woken, and hub_wait_fd() must return -1 with errno set to what woke it, EBADF");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(waiter_of_closed, NULL);
	co_spawn(closer, NULL);
	run_all();
	green_close(pair[1]);
	th_expect_trace("closed woken with EBADF", "a coroutine waited to read an fd that another "
			"then closed with green_close()");
}
END_TEST

static int wakes;

/* Waits with hub_wait_fd() itself, so that each wake can be counted, and
 * drains the socket after each. */
static void counting_reader(void *arg)
{
	(void)arg;
	for (;;) {
		if (hub_wait_fd(pair[0], HUB_READ, -1) < 0) {
			note_errno("a wait");
			return;
		}
		wakes++;
		char buf[16] = "";
		ssize_t got = read(pair[0], buf, sizeof buf - 1);
		if (got <= 0) {
			th_note("%s", got == 0 ? "eof" : "read failed");
			return;
		}
		th_note("%s", buf);
	}
}

static void three_writes(void *arg)
{
	(void)arg;
	green_write(pair[1], "a", 1);
	co_sleep(5);
	green_write(pair[1], "b", 1);
	co_sleep(5);
	green_close(pair[1]);
}

START_TEST(a_parked_reader_wakes_once_per_readiness)
{
	th_about("wait_fd poll", "a reader that drains its socket after every wake must be woken "
		 "once for each time data or the end of file arrives: not twice, not never, and its "
		 "next wait must not find its own old entry (EBUSY)");
	th_trace_start();
	wakes = 0;
	th_socket_pair(pair);
	co_spawn(counting_reader, NULL);
	co_spawn(three_writes, NULL);
	run_all();
	green_close(pair[0]);
	th_expect_trace("abeof", "a reader woken by two writes and a close");
	if (wakes != 3)
		th_fail("the reader was woken %d times for 2 writes and a close; expected 3", wakes);
}
END_TEST

static void waits_that_time_out(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2; i++) {
		if (hub_wait_fd(pair[0], HUB_READ, in_ms(10)) == 0)
			th_note("ready ");
		else if (errno == ETIMEDOUT)
			th_note("timed out ");
		else
			note_errno("a wait");
	}
}

START_TEST(a_wait_with_a_deadline_times_out)
{
	th_about("wait_fd poll", "hub_wait_fd() with a deadline on an fd that never becomes "
		 "ready must return -1 with errno ETIMEDOUT (what park_until() returned), and leave "
		 "the fd free for the next wait");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(waits_that_time_out, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("timed out timed out ", "a coroutine waited twice, 10 ms each, to read a "
			"socket nobody wrote to");
}
END_TEST

/* A reader parked on a low fd while another coroutine's wait on a high fd
 * grows the hub's table (realloc, which moves it: see __wrap_realloc). */
static int high_fd = -1;

static void waits_twice(void *arg)
{
	(void)arg;
	if (hub_wait_fd(pair[0], HUB_READ, in_ms(300)) < 0) {
		note_errno("the first wait");
		return;
	}
	char c;
	if (read(pair[0], &c, 1) == 1)
		th_note("%c ", c);
	/* Nobody writes again: this one times out, unless it finds its own
	 * entry left in the table from the first wait. */
	if (hub_wait_fd(pair[0], HUB_READ, in_ms(10)) == 0)
		th_note("ready ");
	else if (errno == ETIMEDOUT)
		th_note("timed out ");
	else
		note_errno("the second wait");
}

static void waits_on_a_high_fd(void *arg)
{
	(void)arg;
	if (hub_wait_fd(high_fd, HUB_READ, in_ms(300)) < 0)
		note_errno("the wait on the high fd");
}

static void write_to_both(void *arg)
{
	(void)arg;
	if (write(pair[1], "a", 1) != 1 || write(pair2[1], "b", 1) != 1)
		th_note("write failed ");
}

START_TEST(a_wait_outlives_the_fd_table_growing)
{
	th_about("wait_fd poll", "while a coroutine was parked, another one's wait on a higher fd "
		 "grew the hub's table (realloc moved it): after parking, hub_wait_fd() must take "
		 "&hub.fds[fd] again before it clears its waiter entry, not use the f it had");
	th_trace_start();
	th_socket_pair(pair);
	th_socket_pair(pair2);
	high_fd = fcntl(pair2[0], F_DUPFD_CLOEXEC, 200);
	if (high_fd < 0)
		th_fail("fcntl(F_DUPFD_CLOEXEC, 200): %s", strerror(errno));
	co_spawn(waits_twice, NULL);
	co_spawn(waits_on_a_high_fd, NULL);
	co_spawn(write_to_both, NULL);
	run_all();
	green_close(high_fd);
	green_close(pair[0]);
	green_close(pair[1]);
	green_close(pair2[0]);
	green_close(pair2[1]);
	th_expect_trace("a timed out ", "a coroutine waited to read a socket while another waited "
			"on fd 200 or above, which grows the hub's table; then it got a byte and "
			"waited again for 10 ms");
}
END_TEST

static uint64_t loops_while_waiting;

static void sleep_then_close(void *arg)
{
	(void)arg;
	uint64_t before = hub_loops();
	co_sleep(200);
	loops_while_waiting = hub_loops() - before;
	green_close(pair[0]);	/* wakes the waiter with EBADF */
}

START_TEST(a_hub_waiting_on_a_silent_socket_sleeps_in_the_kernel)
{
	th_about("wait_fd poll", "with a coroutine waiting on a socket that stays silent and "
		 "another sleeping for 200 ms, the hub should wait in epoll_wait until the timer is "
		 "due, not poll the socket in a loop");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(waiter_of_closed, NULL);
	co_spawn(sleep_then_close, NULL);
	run_all();
	green_close(pair[1]);
	th_expect_trace("woken with EBADF", "a coroutine waited on a silent socket until another "
			"closed it after 200 ms");
	if (loops_while_waiting > 5)
		th_fail("the hub went round its loop %llu times in 200 ms while one coroutine "
			"waited on a silent socket and the other slept; a hub that sleeps in the "
			"kernel needs one or two", (unsigned long long)loops_while_waiting);
}
END_TEST

static void waiting_writer(void *arg)
{
	(void)arg;
	if (hub_wait_fd(pair[0], HUB_WRITE, in_ms(300)) == 0)
		th_note("writable ");
	else
		note_errno("the wait to write");
}

/* Runs once the reader and the writer of pair[0] are parked: makes pair[0]
 * readable, and then writable again by reading all it had sent. */
static void other_end(void *arg)
{
	(void)arg;
	if (write(pair[1], "x", 1) != 1)
		th_note("write failed ");
	static char buf[64 * 1024];	/* not on the coroutine's 64 KiB stack */
	while (read(pair[1], buf, sizeof buf) > 0)
		continue;
}

START_TEST(a_reader_and_a_writer_wait_on_one_fd)
{
	th_about("wait_fd poll", "a coroutine waiting to read and one waiting to write the same "
		 "fd must both be woken: arm() the fd for what it already watches plus the new "
		 "direction (f->armed | interest[dir]), not for the new direction alone");
	th_trace_start();
	th_socket_pair(pair);
	/* Fill pair[0]'s way out, so that a wait to write it parks. */
	static const char buf[64 * 1024];
	for (;;) {
		if (write(pair[0], buf, sizeof buf) > 0 || errno == EINTR)
			continue;
		if (errno == EAGAIN)
			break;
		th_fail("filling a socket: %s", strerror(errno));
	}
	co_spawn(waiting_reader, (void *)(intptr_t)300);
	co_spawn(waiting_writer, NULL);
	co_spawn(other_end, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("xwritable ", "one coroutine waited to read a socket and another waited to "
			"write it (300 ms at most each); then the peer wrote a byte and read "
			"everything, so the next epoll_wait reports the socket readable and writable "
			"at once, and wakes the reader, then the writer");
}
END_TEST

/* Two readers on two sockets, and the hub loop in which each woke. */
static uint64_t woke_in_loop[2];

static void loop_noting_reader(void *arg)
{
	int which = (int)(intptr_t)arg;
	int fd = which == 0 ? pair[0] : pair2[0];
	if (hub_wait_fd(fd, HUB_READ, in_ms(300)) < 0) {
		note_errno("a wait");
		return;
	}
	woke_in_loop[which] = hub_loops();
	char c;
	if (read(fd, &c, 1) == 1)
		th_note("%c", c);
}

static void write_both(void *arg)
{
	(void)arg;
	if (write(pair[1], "a", 1) != 1 || write(pair2[1], "b", 1) != 1)
		th_note("write failed ");
}

START_TEST(one_epoll_wait_wakes_every_ready_fd)
{
	th_about("wait_fd poll", "epoll_wait() returns every ready fd at once (it returns how "
		 "many): dispatch() each of the n events, not only the first");
	th_trace_start();
	th_socket_pair(pair);
	th_socket_pair(pair2);
	woke_in_loop[0] = woke_in_loop[1] = 0;
	co_spawn(loop_noting_reader, (void *)(intptr_t)0);
	co_spawn(loop_noting_reader, (void *)(intptr_t)1);
	co_spawn(write_both, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	green_close(pair2[0]);
	green_close(pair2[1]);
	th_expect_trace("ab", "two coroutines waited to read two sockets; a third wrote to both");
	if (woke_in_loop[0] != woke_in_loop[1])
		th_fail("two sockets became readable before the hub's next epoll_wait, which "
			"reports both; the first reader woke after epoll_wait number %llu, the second "
			"after number %llu", (unsigned long long)woke_in_loop[0],
			(unsigned long long)woke_in_loop[1]);
}
END_TEST

/* A ping-pong over a socket pair keeps the hub busy: every epoll_wait has
 * an event. Meanwhile a sleeper's timer falls due. */
static bool sleeper_woke;
static long rounds, rounds_when_woken;

static void pinger(void *arg)
{
	(void)arg;
	int64_t give_up = co_now_ms() + th_ms(1000);
	char c = 'p';
	while (!sleeper_woke && co_now_ms() < give_up) {
		if (write(pair[0], &c, 1) != 1 || hub_wait_fd(pair[0], HUB_READ, -1) < 0 ||
		    read(pair[0], &c, 1) != 1) {
			note_errno("a ping");
			break;
		}
		rounds++;
	}
	c = 'q';	/* the ponger's cue to stop */
	if (write(pair[0], &c, 1) != 1)
		note_errno("the last ping");
}

static void ponger(void *arg)
{
	(void)arg;
	for (;;) {
		char c;
		if (hub_wait_fd(pair[1], HUB_READ, -1) < 0 || read(pair[1], &c, 1) != 1) {
			note_errno("a pong");
			return;
		}
		if (c == 'q' || write(pair[1], &c, 1) != 1)
			return;
	}
}

static void light_sleeper(void *arg)
{
	(void)arg;
	co_sleep(5);
	sleeper_woke = true;
	rounds_when_woken = rounds;
}

START_TEST(timers_fire_while_sockets_keep_the_hub_busy)
{
	th_about("wait_fd poll", "the hub must expire the timers after every epoll_wait, not "
		 "only when epoll_wait timed out with no event: a busy socket would starve every "
		 "sleeper");
	th_socket_pair(pair);
	sleeper_woke = false;
	rounds = rounds_when_woken = 0;
	co_spawn(light_sleeper, NULL);
	co_spawn(pinger, NULL);
	co_spawn(ponger, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	if (!sleeper_woke || rounds_when_woken >= rounds)
		th_fail("a coroutine slept 5 ms while two others played ping-pong over a socket "
			"pair until it woke, for at most %d ms; it woke only %s, after %ld rounds of "
			"%ld", th_ms(1000), sleeper_woke ? "once the ping-pong was over" : "never",
			rounds_when_woken, rounds);
}
END_TEST

/* ---- All asleep after fd waits -------------------------------------------- */

static co_id first_id, second_id;

static void join_second(void *arg)
{
	(void)arg;
	co_join(second_id);
}

static void join_first(void *arg)
{
	(void)arg;
	co_join(first_id);
}

/* Run fn with stderr going to a file, and return what it wrote. */
static const char *capture_stderr(int (*fn)(void), int *result)
{
	static char text[4096];
	FILE *file = tmpfile();
	if (file == NULL)
		th_fail("tmpfile: %s", strerror(errno));
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(file), STDERR_FILENO);
	*result = fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(file);
	size_t len = fread(text, 1, sizeof text - 1, file);
	text[len] = '\0';
	fclose(file);
	return text;
}

/* A reader that gets its byte, then two coroutines that join each other. */
static void read_then_deadlock(void *arg)
{
	(void)arg;
	if (hub_wait_fd(pair[0], HUB_READ, -1) < 0) {
		note_errno("the wait");
		return;
	}
	char c;
	if (read(pair[0], &c, 1) == 1)
		th_note("read ");
	first_id = co_spawn(join_second, NULL);
	second_id = co_spawn(join_first, NULL);
}

static void write_a_byte(void *arg)
{
	(void)arg;
	if (write(pair[1], "x", 1) != 1)
		th_note("write failed ");
}

START_TEST(all_asleep_is_reported_once_the_fd_waits_are_over)
{
	th_about("wait_fd poll", "hub_wait_fd() counts its waiter in hub.fd_waits while it is "
		 "parked, and uncounts it when it wakes: a count left over makes hub_poll() wait "
		 "in epoll_wait for ever instead of reporting that nothing can wake anyone");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(read_then_deadlock, NULL);
	co_spawn(write_a_byte, NULL);
	int result;
	const char *err = capture_stderr(co_run, &result);
	co_cancel_all();
	co_run();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("read ", "a coroutine waited for a byte that another wrote, then spawned "
			"two coroutines that join each other");
	if (result != -1 || strstr(err, "all coroutines are asleep") == NULL)
		th_fail("after a coroutine's wait on an fd had ended, two coroutines joined each "
			"other; expected co_run() to return -1 and print \"all coroutines are "
			"asleep\"; it returned %d and printed:\n%s", result, err);
}
END_TEST

/* ---- green_read ------------------------------------------------------------ */

static void reader(void *arg)
{
	(void)arg;
	char buf[16] = "";
	ssize_t got = green_read(pair[0], buf, sizeof buf - 1);
	if (got > 0)
		th_note("%s", buf);
	else
		th_note("read returned %zd (%s)", got, got < 0 ? strerror(errno) : "end of file");
}

static void writer_later(void *arg)
{
	(void)arg;
	th_note("sleep ");
	co_sleep(30);
	if (green_write(pair[1], "data", 4) != 4)
		th_note("write failed ");
}

START_TEST(reader_parks_until_data_arrives)
{
	th_about("green_read wait_fd poll", "green_read() must park on EAGAIN, be woken when the "
		 "fd becomes readable, and then read again");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(reader, NULL);
	co_spawn(writer_later, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("sleep data", "a reader waited while a writer slept 30 ms and wrote");
}
END_TEST

static void reader_of_gone_peer(void *arg)
{
	(void)arg;
	char c;
	ssize_t got = green_read(pair[0], &c, 1);
	if (got == 0)
		th_note("end of file");
	else
		th_note("read returned %zd (%s)", got, got < 0 ? strerror(errno) : "a byte");
	co_cancel_all();	/* the guard */
}

static void peer_leaves(void *arg)
{
	(void)arg;
	co_sleep(10);
	green_close(pair[1]);
}

START_TEST(peer_leaving_wakes_the_reader)
{
	th_about("green_read wait_fd poll", "when the peer closes, the parked reader must wake "
		 "and return the 0 (end of file) that read() gives, not wait for more");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(reader_of_gone_peer, NULL);
	co_spawn(peer_leaves, NULL);
	co_spawn(guard, (void *)(intptr_t)300);
	run_all();
	green_close(pair[0]);
	th_expect_trace("end of file", "a reader whose peer closed 10 ms later");
}
END_TEST

static int intruder[2];

static void closer_and_reuser(void *arg)
{
	(void)arg;
	green_close(pair[0]);
	/* The fd number is free now; the next socket may take it, as the next
	 * accept() does in a server. */
	if (dup2(intruder[0], pair[0]) < 0 || write(intruder[1], "intruder", 8) != 8)
		th_note("dup2 or write failed ");
}

START_TEST(a_read_whose_fd_is_closed_fails_even_if_the_number_is_reused)
{
	th_about("green_read wait_fd", "when hub_wait_fd() fails (here EBADF: the fd was closed), "
		 "green_read() must return -1 with that errno, not go round and read again: the fd "
		 "number may already be another connection's");
	th_trace_start();
	th_socket_pair(pair);
	th_socket_pair(intruder);
	co_spawn(reader, NULL);
	co_spawn(closer_and_reuser, NULL);
	run_all();
	green_close(pair[0]);	/* the duplicate of intruder[0] */
	green_close(pair[1]);
	green_close(intruder[0]);
	green_close(intruder[1]);
	char expected[64];
	snprintf(expected, sizeof expected, "read returned -1 (%s)", strerror(EBADF));
	th_expect_trace(expected, "a reader parked in green_read() while another coroutine closed "
			"its fd, and a new socket with \"intruder\" to read took the same number");
}
END_TEST

static bool drained_after_short_read, read_dry;

static void short_reader(void *arg)
{
	(void)arg;
	char buf[16];
	if (write(pair[1], "ab", 2) != 2)
		th_note("write failed ");
	ssize_t got = green_read(pair[0], buf, sizeof buf);
	th_note("%zd ", got);
	drained_after_short_read = !hub_may_read(pair[0]);
}

START_TEST(a_short_read_tells_the_hub_the_socket_is_drained)
{
	th_about("green_read", "a read() that returned fewer bytes than asked for has most likely "
		 "emptied the socket: green_read() must say so with hub_drained(fd), so that the "
		 "next green_read() parks at once instead of making a read() that fails with EAGAIN");
	th_trace_start();
	th_socket_pair(pair);
	co_spawn(short_reader, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("2 ", "a coroutine wrote 2 bytes to a socket and read it with room for 16");
	if (!drained_after_short_read)
		th_fail("after green_read() got 2 bytes of the 16 it asked for, hub_may_read() "
			"still said true: green_read() did not call hub_drained(fd)");
}
END_TEST

static void looks_while_parked(void *arg)
{
	(void)arg;
	/* The reader, spawned first, has parked by now. */
	read_dry = !hub_may_read(pair[0]);
	if (write(pair[1], "x", 1) != 1)
		th_note("write failed ");
}

START_TEST(a_read_that_would_block_tells_the_hub_before_parking)
{
	th_about("green_read wait_fd poll", "a read() that failed with EAGAIN found the socket "
		 "empty: green_read() must say so with hub_drained(fd) before it parks");
	th_trace_start();
	read_dry = false;
	th_socket_pair(pair);
	co_spawn(reader, NULL);
	co_spawn(looks_while_parked, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	th_expect_trace("x", "a reader of an empty socket, and a writer after it parked");
	if (!read_dry)
		th_fail("while a coroutine was parked in green_read() after a read() that failed "
			"with EAGAIN, hub_may_read() still said true: green_read() did not call "
			"hub_drained(fd)");
}
END_TEST

/* ---- All asleep, and the dump --------------------------------------------- */

START_TEST(all_asleep_is_reported_not_a_hang)
{
	th_about("poll", "when nothing can ever wake the waiting coroutines (no fd, no timer), "
		 "co_run() must say so and return -1 instead of sleeping for ever");
	first_id = co_spawn(join_second, NULL);
	second_id = co_spawn(join_first, NULL);
	int result;
	const char *err = capture_stderr(co_run, &result);
	/* Unwind them, so that the next test (in CK_FORK=no mode, in this same
	 * process) starts with no coroutine left over. */
	co_cancel_all();
	co_run();
	if (result != -1 || strstr(err, "all coroutines are asleep") == NULL ||
	    strstr(err, "join #") == NULL)
		th_fail("two coroutines joined each other; expected co_run() to return -1 and "
			"print \"all coroutines are asleep\" with their joins; it returned %d and "
			"printed:\n%s", result, err);
}
END_TEST

/* A ring of coroutines, each joining the next. */
enum { RING = 25 };
static co_id ring[RING];

static void join_the_next(void *arg)
{
	int i = (int)(intptr_t)arg;
	co_join(ring[(i + 1) % RING]);
}

START_TEST(all_asleep_report_lists_twenty_coroutines_and_counts_the_rest)
{
	th_about("poll", "when nothing can ever wake the waiting coroutines, co_run() must say so "
		 "and return -1, listing the first 20 coroutines, not all of them");
	for (int i = 0; i < RING; i++)
		ring[i] = co_spawn(join_the_next, (void *)(intptr_t)i);
	int result;
	const char *err = capture_stderr(co_run, &result);
	co_cancel_all();
	co_run();
	int lines = 0;
	for (const char *at = strstr(err, "\n  #"); at != NULL; at = strstr(at + 1, "\n  #"))
		lines++;
	if (result != -1 || lines != 20 || strstr(err, "25 coroutines") == NULL ||
	    strstr(err, "... and 5 more") == NULL)
		th_fail("25 coroutines joined each other in a ring; expected co_run() to return -1 "
			"and print \"all coroutines are asleep\" with the dump's header (25 "
			"coroutines), 20 of them and \"... and 5 more\"; it returned %d and printed "
			"%d of them:\n%s", result, lines, err);
}
END_TEST

static char dump[4096];

static void dumper(void *arg)
{
	(void)arg;
	co_sleep(5);	/* let the others park first */
	FILE *out = fmemopen(dump, sizeof dump, "w");
	if (out != NULL) {
		co_dump(out);
		fclose(out);
	}
	green_write(pair[1], "x", 1);	/* wake the reader */
}

static void named_sleeper(void *arg)
{
	(void)arg;
	co_set_name("sleeper");
	co_sleep(50);
}

START_TEST(dump_lists_coroutines_and_what_they_wait_for)
{
	th_about("wait_fd poll", "co_dump() should list every coroutine with its state and its "
		 "wait, which hub_wait_fd() describes in co->wait (.what \"read\", .fd) before it "
		 "parks");
	th_socket_pair(pair);
	th_trace_start();
	/* The dumper sleeps less than the sleeper, and goes to sleep first: the
	 * timers are in order without sift_up, which is not this test's TODO. */
	co_spawn(waiting_reader, NULL);
	co_spawn(dumper, NULL);
	co_spawn(named_sleeper, NULL);
	run_all();
	green_close(pair[0]);
	green_close(pair[1]);
	char read_wait[32];
	snprintf(read_wait, sizeof read_wait, "read fd %d", pair[0]);
	if (strstr(dump, "3 coroutines") == NULL || strstr(dump, read_wait) == NULL ||
	    strstr(dump, "sleeper") == NULL || strstr(dump, "sleep, due in") == NULL ||
	    strstr(dump, "running") == NULL)
		th_fail("expected the dump to show 3 coroutines: one waiting to \"%s\", one named "
			"\"sleeper\" in \"sleep, due in ...\", and the running one; it was:\n%s",
			read_wait, dump);
}
END_TEST

/* ---- Signals ------------------------------------------------------------- */

static void on_alarm(int sig)
{
	(void)sig;
}

static void sleep_fifty(void *arg)
{
	(void)arg;
	if (co_sleep(50) == 0)
		th_note("slept");
}

/* In a child process, so that a hub that exits on EINTR fails this test
 * with a message instead of ending the test process: a sleeper naps 50 ms
 * while SIGALRM comes every 5 ms. Returns its stderr and exit status. */
static int sleep_through_signals(char *err, size_t size)
{
	int pipefd[2];
	if (pipe(pipefd) < 0)
		th_fail("pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		th_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		/* No SA_RESTART: epoll_wait is never restarted anyway (signal(7)). */
		struct sigaction sa = { .sa_handler = on_alarm };
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval every = { .it_interval = { 0, 5000 }, .it_value = { 0, 5000 } };
		setitimer(ITIMER_REAL, &every, NULL);
		th_trace_start();
		co_spawn(sleep_fifty, NULL);
		int result = co_run();
		setitimer(ITIMER_REAL, &(struct itimerval){ 0 }, NULL);
		_exit(result == 0 && strcmp(th_trace(), "slept") == 0 ? 0 : 3);
	}
	close(pipefd[1]);
	size_t len = 0;
	int64_t deadline = co_now_ms() + th_ms(2000);
	struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
	while (len + 1 < size && co_now_ms() < deadline &&
	       poll(&pfd, 1, (int)(deadline - co_now_ms())) > 0) {
		ssize_t got = read(pipefd[0], err + len, size - 1 - len);
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	err[len] = '\0';
	close(pipefd[0]);
	int status;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (co_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		th_sleep_ms(5);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

START_TEST(a_signal_that_interrupts_epoll_wait_is_harmless)
{
	th_about("poll", "epoll_wait() fails with EINTR when a signal handler runs while it "
		 "waits: that is no error (go round again), and must not end the program");
	char err[1024], how[64];
	int status = sleep_through_signals(err, sizeof err);
	if (status == 0)
		return;
	if (status < 0)
		snprintf(how, sizeof how, "was still running after %d ms", th_ms(2000));
	else if (status == 3)
		snprintf(how, sizeof how, "saw co_run() fail or the sleeper not wake");
	else
		snprintf(how, sizeof how, "exited with status %d", status);
	th_fail("a coroutine slept 50 ms while a SIGALRM handler ran every 5 ms; expected co_run() "
		"to return 0 once it woke, but the process %s. Its stderr:\n%s", how, err);
}
END_TEST

/* ---- Many, and idle ------------------------------------------------------- */

static long woken;

static void sleep_a_while(void *arg)
{
	long ms = (long)(intptr_t)arg;
	if (co_sleep(ms) == 0)
		woken++;
}

START_TEST(ten_thousand_coroutines_sleep_and_wake)
{
	th_about("sift_up poll", "the timer heap or the hub loses sleepers");
	enum { MANY = 10000 };
	woken = 0;
	for (long i = 0; i < MANY; i++)
		if (co_spawn(sleep_a_while, (void *)(intptr_t)(1 + (i * 7919) % 50)) == 0)
			th_fail("co_spawn failed at coroutine %ld: %s", i, strerror(errno));
	run_all();
	if (woken != MANY || co_count() != 0)
		th_fail("%d coroutines slept 1-50 ms; %ld woke, %zu are left", MANY, woken,
			co_count());
}
END_TEST

static uint64_t loops_while_idle;

static void sleep_one_second(void *arg)
{
	(void)arg;
	uint64_t before = hub_loops();
	co_sleep(1000);
	loops_while_idle = hub_loops() - before;
}

START_TEST(idle_hub_sleeps_in_the_kernel)
{
	th_about("poll", "with one coroutine sleeping for a second and nothing else to do, the "
		 "hub should wait in epoll_wait with the timer's timeout, not loop");
	co_spawn(sleep_one_second, NULL);
	run_all();
	if (loops_while_idle > 5)
		th_fail("the hub went round its loop %llu times while the only coroutine slept "
			"for a second; a hub that sleeps in the kernel needs one or two",
			(unsigned long long)loops_while_idle);
}
END_TEST

/* ---- The watchdog --------------------------------------------------------- */

static void hog(void *arg)
{
	(void)arg;
	co_set_name("hog");
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do	/* computing, never waiting: everyone else is stuck */
		clock_gettime(CLOCK_MONOTONIC, &now);
	while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < 400);
}

START_TEST(watchdog_names_a_coroutine_that_never_waits)
{
	th_about("", "the watchdog thread should report a coroutine that runs longer than its "
		 "threshold without waiting, with its number and its name");
	FILE *out = tmpfile();
	if (out == NULL || co_watchdog(100, out) < 0)
		th_fail("cannot start the watchdog: %s", strerror(errno));
	co_id id = co_spawn(hog, NULL);
	run_all();
	char text[512] = "";
	rewind(out);
	size_t len = fread(text, 1, sizeof text - 1, out);
	text[len] = '\0';
	char expected[64];
	snprintf(expected, sizeof expected, "coroutine #%llu (hog) has run for",
		 (unsigned long long)id);
	if (strstr(text, expected) == NULL)
		th_fail("a coroutine named \"hog\" computed for 400 ms with the watchdog at 100 ms; "
			"expected \"%s ...\" from the watchdog, got:\n%s", expected, text);
}
END_TEST

/* ---- The server, with ten thousand clients -------------------------------- */

START_TEST(ten_thousand_clients_are_served_at_once)
{
	th_about("green_read wait_fd poll", "one thread must hold every connection open and "
		 "serve each one; the hub wakes only the coroutines whose sockets are ready");
	/* Each connection is a descriptor in this process and one in the server
	 * (which inherits the limit): ask for as many as the hard limit allows. */
	long clients = th_raise_fd_limit(10000);
	struct th_server *server = th_start(NULL);
	static const char msg[] = "one of ten thousand";
	th_echo_many(server, (size_t)clients, msg, sizeof msg - 1, 0, 30000);
}
END_TEST

static Suite *hub_suite(void)
{
	Suite *s = th_suite("05-epoll-hub");
	TCase *tc = th_tcase(s, "timers", "sift_up poll");
	th_tcase_deadline(tc, 10);
	th_test(tc, sleepers_wake_in_deadline_order);
	th_test(tc, ten_thousand_coroutines_sleep_and_wake);

	tc = th_tcase(s, "closing", "wait_fd");
	th_test(tc, closing_an_fd_wakes_its_waiter);

	tc = th_tcase(s, "waiting", "wait_fd poll");
	th_test(tc, second_waiter_on_the_same_fd_gets_ebusy);
	th_test(tc, a_parked_reader_wakes_once_per_readiness);
	th_test(tc, a_wait_with_a_deadline_times_out);
	th_test(tc, a_wait_outlives_the_fd_table_growing);
	th_test(tc, a_hub_waiting_on_a_silent_socket_sleeps_in_the_kernel);
	th_test(tc, a_reader_and_a_writer_wait_on_one_fd);
	th_test(tc, one_epoll_wait_wakes_every_ready_fd);
	th_test(tc, timers_fire_while_sockets_keep_the_hub_busy);
	th_test(tc, all_asleep_is_reported_once_the_fd_waits_are_over);
	th_test(tc, dump_lists_coroutines_and_what_they_wait_for);

	tc = th_tcase(s, "green_read", "green_read");
	th_test(tc, a_short_read_tells_the_hub_the_socket_is_drained);

	tc = th_tcase(s, "green_read_closed", "green_read wait_fd");
	th_test(tc, a_read_whose_fd_is_closed_fails_even_if_the_number_is_reused);

	tc = th_tcase(s, "green_read_parked", "green_read wait_fd poll");
	th_test(tc, reader_parks_until_data_arrives);
	th_test(tc, peer_leaving_wakes_the_reader);
	th_test(tc, a_read_that_would_block_tells_the_hub_before_parking);

	tc = th_tcase(s, "scheduler", "poll");
	th_tcase_deadline(tc, 10);
	th_test(tc, join_waits_for_the_end_and_then_returns_at_once);
	th_test(tc, all_asleep_is_reported_not_a_hang);
	th_test(tc, all_asleep_report_lists_twenty_coroutines_and_counts_the_rest);
	th_test(tc, idle_hub_sleeps_in_the_kernel);
	th_test(tc, a_signal_that_interrupts_epoll_wait_is_harmless);

	tc = th_tcase(s, "server", "green_read wait_fd poll");
	th_tcase_deadline(tc, 15);
	th_test(tc, ten_thousand_clients_are_served_at_once);

	tc = th_tcase(s, "inspection", "");
	th_test(tc, sleep_zero_lets_the_others_run);
	/* The watchdog thread outlives its test: it needs the test's own
	 * process, Check's fork mode (make memcheck runs without it). */
	const char *fork_mode = getenv("CK_FORK");
	if (fork_mode == NULL || strcmp(fork_mode, "no") != 0)
		th_test(tc, watchdog_names_a_coroutine_that_never_waits);
	return s;
}

int main(void)
{
	return th_run(hub_suite());
}
