/* Chapter 08's mailbox tests: messages posted from other threads run on the
 * hub's thread, each once, in the order each thread posted them, while the
 * hub sleeps in epoll_wait between them. Assertions run on the main stack,
 * after co_run() returns; a coroutine that gives up after a deadline ends
 * the run when the hub is never woken, so that such a mailbox fails its
 * test instead of hanging it. */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "co.h"
#include "green.h"
#include "harness.h"
#include "mailbox.h"

enum {
	PER_POSTER = 1000,
	POSTERS = 2,
	GIVE_UP_MS = 500,       /* every message has run long before this */
};

static struct mailbox *box;
static co_id server, watchdog;
static bool gave_up;            /* the deadline passed before stop ran */
static pthread_t hub_thread;

/* What the messages did, in the order they ran. */
static int seen[POSTERS * PER_POSTER];
static int seen_count;
static bool off_the_hub;	/* a message ran on another thread */

static void record(void *arg)
{
	if (!pthread_equal(pthread_self(), hub_thread))
		off_the_hub = true;
	if (seen_count < POSTERS * PER_POSTER)
		seen[seen_count] = (int)(intptr_t)arg;
	seen_count++;
}

/* The last message: end the mailbox coroutine and the watchdog, so that
 * co_run() returns. */
static void stop(void *arg)
{
	(void)arg;
	co_cancel(server);
	co_cancel(watchdog);
}

/* A coroutine on the hub: if stop has not run by the deadline, stop the
 * mailbox coroutine itself, so that co_run() returns and the test can say
 * what ran and what did not. */
static void give_up(void *arg)
{
	(void)arg;
	if (co_sleep(th_ms(GIVE_UP_MS)) < 0)
		return;	/* cancelled by stop: all is well */
	gave_up = true;
	co_cancel(server);
}

static void post(mailbox_fn *fn, int value)
{
	if (mailbox_post(box, fn, (void *)(intptr_t)value) < 0)
		th_fail("mailbox_post: %s", strerror(errno));
}

/* Posts PER_POSTER messages numbered first, first + 1, ... */
static void *poster(void *arg)
{
	int first = (int)(intptr_t)arg;
	for (int i = 0; i < PER_POSTER; i++)
		post(record, first + i);
	return NULL;
}

/* The posting threads, and how many of them run. */
static pthread_t posters[POSTERS];
static int poster_count;

/* Waits for the posters, then posts stop: all from other threads, while
 * the hub sleeps in epoll_wait or runs messages. */
static void *last_word(void *arg)
{
	(void)arg;
	for (int i = 0; i < poster_count; i++)
		pthread_join(posters[i], NULL);
	post(stop, 0);
	return NULL;
}

static void start(void)
{
	seen_count = 0;
	off_the_hub = false;
	gave_up = false;
	hub_thread = pthread_self();
	box = mailbox_open();
	if (box == NULL)
		th_fail("mailbox_open: %s", strerror(errno));
	server = co_spawn(mailbox_serve, box);
	watchdog = co_spawn(give_up, NULL);
	if (server == 0 || watchdog == 0)
		th_fail("co_spawn: %s", strerror(errno));
}

/* After co_run(): fail if the deadline passed before the last message ran. */
static void expect_stop_ran(int posted)
{
	if (gave_up)
		th_fail("%d messages were posted, the last of them to stop the hub; after %d ms "
			"%d had run, and the last had not: was the hub woken (a write to the "
			"eventfd after each post), and does it take every message queued at each "
			"wake-up?", posted, th_ms(GIVE_UP_MS), seen_count);
}

static void start_thread(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	int err = pthread_create(thread, NULL, fn, arg);
	if (err != 0)
		th_fail("pthread_create: %s", strerror(err));
}

/* Start n posters and the thread that posts stop after them, and run the
 * hub until stop has run. */
static void post_from_threads_and_run(int n)
{
	poster_count = n;
	for (int i = 0; i < n; i++)
		start_thread(&posters[i], poster, (void *)(intptr_t)(i * PER_POSTER));
	pthread_t closer;
	start_thread(&closer, last_word, NULL);
	int result = co_run();
	pthread_join(closer, NULL);
	if (result != 0)
		th_fail("co_run() returned -1: the mailbox coroutine could never be woken");
	mailbox_close(box);
	if (off_the_hub)
		th_fail("a message ran on the posting thread, not on the hub's");
	expect_stop_ran(n * PER_POSTER + 1);
}

START_TEST(messages_from_another_thread_run_on_the_hub_in_order)
{
	th_about("mailbox_post mailbox_serve", "each posted message must run once, on the hub's "
		 "thread, in the order it was posted");
	start();
	post_from_threads_and_run(1);
	if (seen_count != PER_POSTER)
		th_fail("%d messages posted, %d ran", PER_POSTER, seen_count);
	for (int i = 0; i < PER_POSTER; i++)
		if (seen[i] != i)
			th_fail("message %d ran in place %d: the mailbox must keep the order of posting",
				seen[i], i);
}
END_TEST

START_TEST(each_poster_keeps_its_order)
{
	th_about("mailbox_post mailbox_serve", "two threads posting at once: every message of each "
		 "must run, each thread's in its order, while the hub runs them");
	start();
	post_from_threads_and_run(POSTERS);
	if (seen_count != POSTERS * PER_POSTER)
		th_fail("%d messages posted, %d ran", POSTERS * PER_POSTER, seen_count);
	int next[POSTERS] = { 0 };
	for (int i = 0; i < seen_count; i++) {
		int who = seen[i] / PER_POSTER, number = seen[i] % PER_POSTER;
		if (number != next[who])
			th_fail("poster %d's message %d ran before its message %d", who, number,
				next[who]);
		next[who]++;
	}
}
END_TEST

/* Two pipes between the hub and a posting thread: the first message tells
 * the poster it is running, and parks until the poster has posted more. */
static int running[2], posted_more[2];

static void run_while_others_are_posted(void *arg)
{
	record(arg);
	if (write(running[1], "r", 1) != 1)
		th_fail("write: %s", strerror(errno));
	char c;
	if (green_read(posted_more[0], &c, 1) != 1)
		th_fail("green_read: %s", strerror(errno));
}

static void *post_while_the_hub_runs_one(void *arg)
{
	(void)arg;
	post(run_while_others_are_posted, 0);
	/* Wait (with a deadline) until message 0 runs on the hub. */
	struct pollfd pfd = { .fd = running[0], .events = POLLIN };
	char c;
	if (poll(&pfd, 1, th_ms(GIVE_UP_MS)) == 1 && read(running[0], &c, 1) == 1) {
		post(record, 1);
		post(record, 2);
	}
	if (write(posted_more[1], "m", 1) != 1)
		th_fail("write: %s", strerror(errno));
	post(stop, 0);
	return NULL;
}

START_TEST(messages_posted_while_the_hub_runs_one_still_run)
{
	th_about("mailbox_post mailbox_serve", "a message posted while the hub runs another must "
		 "run too: the mailbox coroutine takes what was queued, runs it, and goes back to "
		 "the eventfd for what came meanwhile");
	start();
	if (pipe(running) < 0 || pipe2(posted_more, O_NONBLOCK) < 0)
		th_fail("pipe: %s", strerror(errno));
	pthread_t poster_thread;
	start_thread(&poster_thread, post_while_the_hub_runs_one, NULL);
	int result = co_run();
	pthread_join(poster_thread, NULL);
	mailbox_close(box);
	close(running[0]);
	close(running[1]);
	close(posted_more[0]);
	close(posted_more[1]);
	if (result != 0)
		th_fail("co_run() returned -1: the mailbox coroutine could never be woken");
	if (seen_count > 0 && seen_count != 3)
		th_fail("message 0 ran, and parked; messages 1 and 2 were posted meanwhile, then "
			"stop: %d of the 3 ran. Those posted while a message runs must not be dropped",
			seen_count);
	expect_stop_ran(4);
}
END_TEST

/* ---- A hub thread's watchdog ends with it ---------------------------------------- */

static long threads_now(void)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)getpid());
	long n = 0;
	DIR *dir = opendir(path);
	if (dir == NULL)
		th_fail("opendir %s: %s", path, strerror(errno));
	for (struct dirent *e; (e = readdir(dir)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

static void nothing_much(void *arg)
{
	(void)arg;
	co_sleep(10);
}

/* A hub thread as chapter 08's server runs one: a watchdog, a coroutine,
 * co_run() until it is done; then the thread ends. */
static void *short_lived_hub(void *arg)
{
	(void)arg;
	if (co_watchdog(50, stderr) < 0 || co_spawn(nothing_much, NULL) == 0)
		return (void *)"co_watchdog or co_spawn failed";
	return co_run() == 0 ? NULL : (void *)"co_run() failed";
}

START_TEST(a_hub_threads_watchdog_ends_with_it)
{
	th_about("", "the watchdog reads counters that are its hub thread's own (_Thread_local): "
		 "once that thread has ended they are gone, so its watchdog must stop first");
	long before = threads_now();
	pthread_t thread;
	errno = pthread_create(&thread, NULL, short_lived_hub, NULL);
	if (errno != 0)
		th_fail("pthread_create: %s", strerror(errno));
	void *failed;
	pthread_join(thread, &failed);
	if (failed != NULL)
		th_fail("%s", (const char *)failed);
	long after = threads_now();
	if (after != before)
		th_fail("a hub thread started a watchdog, ran its coroutines and ended; the process "
			"had %ld threads before and %ld after: the watchdog thread lives on, reading "
			"the ended thread's counters", before, after);
}
END_TEST

static Suite *mailbox_suite(void)
{
	Suite *s = th_suite("08-multicore mailbox");
	TCase *tc = th_tcase(s, "mailbox", "mailbox_post mailbox_serve");
	th_test(tc, messages_from_another_thread_run_on_the_hub_in_order);
	th_test(tc, each_poster_keeps_its_order);
	th_test(tc, messages_posted_while_the_hub_runs_one_still_run);
	tc = th_tcase(s, "hub threads", "");
	th_test(tc, a_hub_threads_watchdog_ends_with_it);
	return s;
}

int main(void)
{
	/* Fill what malloc() hands out with a pattern (mallopt(3), M_PERTURB):
	 * a message field left unset is then garbage every time, not the
	 * stale pointer of a freed message that happens to work. */
	mallopt(M_PERTURB, 0xa5);
	return th_run(mailbox_suite());
}
