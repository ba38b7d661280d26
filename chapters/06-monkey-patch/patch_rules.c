/* Chapter 06: what programs written for kernel threads rely on, and the
 * patch must keep, each as a small program (linked with -Wl,--wrap like
 * patch_demo):
 *
 *   patch_rules accept     three threads in accept() on one socket, one
 *                          client each
 *   patch_rules write      one write() of 1 MiB to a pipe returns 1 MiB
 *   patch_rules kinds      statically initialised recursive and
 *                          error-checking mutexes, contended
 *   patch_rules timed      pthread_mutex_timedlock, pthread_mutex_clocklock
 *                          and pthread_cond_clockwait time out while the
 *                          other threads run
 *   patch_rules fclose     an fd closed by fclose() comes back as a new
 *   patch_rules close_range  pipe, or by close_range(), dup2(), or close()
 *   patch_rules dup2         on a worker thread: a read on the new pipe
 *   patch_rules worker       still wakes
 *   patch_rules dup        a pipe left open by a dup costs no CPU once its
 *                          first fd is closed
 *   patch_rules burst      four jobs offloaded at once run at once
 *   patch_rules cancelled  a green thread cancelled (co_cancel_all()) while
 *                          its job runs lets the others go on
 *
 * Each prints what it saw and exits 0, or says what went wrong and exits 1;
 * none waits for ever (each wait has a guard). */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "co.h"		/* co_cancel_all(), for one rule */
#include "offload.h"

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "patch_rules: %s: %s\n", what, strerror(errno));
	exit(EXIT_FAILURE);
}

static void check(int err, const char *what)
{
	if (err != 0) {
		errno = err;
		die(what);
	}
}

static pthread_t start(void *(*fn)(void *), void *arg)
{
	pthread_t thread;
	check(pthread_create(&thread, NULL, fn, arg), "pthread_create");
	return thread;
}

static double now_s(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Wait, in 1 ms sleeps, for *flag, at most ms: false if it never came. */
static bool wait_for(atomic_int *flag, int ms)
{
	for (int waited = 0; !atomic_load(flag); waited++) {
		if (waited == ms)
			return false;
		usleep(1000);
	}
	return true;
}

/* ---- accept: threads sharing a listening socket ---------------------------- */

static int listener;
static atomic_int accepted;

static void *accept_one(void *arg)
{
	(void)arg;
	int client = accept(listener, NULL, NULL);
	if (client < 0) {
		fprintf(stderr, "patch_rules: accept: %s\n", strerror(errno));
		return NULL;
	}
	atomic_fetch_add(&accepted, 1);
	close(client);
	return NULL;
}

static int rule_accept(void)
{
	listener = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof addr;
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
	    listen(listener, 8) < 0 || getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
		die("listen");
	pthread_t threads[3];
	for (int i = 0; i < 3; i++)
		threads[i] = start(accept_one, NULL);
	usleep(10000);	/* all three blocked in accept() */
	int clients[3];
	for (int i = 0; i < 3; i++) {
		clients[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (clients[i] < 0 || connect(clients[i], (struct sockaddr *)&addr, len) < 0)
			die("connect");
	}
	for (int i = 0; i < 3; i++)
		check(pthread_join(threads[i], NULL), "pthread_join");
	printf("three threads in accept() on one socket accepted %d clients\n", atomic_load(&accepted));
	for (int i = 0; i < 3; i++)
		close(clients[i]);
	close(listener);
	return atomic_load(&accepted) == 3 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- write: a blocking write writes everything ------------------------------ */

enum { MIB = 1024 * 1024 };

static void *drain_pipe(void *arg)
{
	int fd = *(int *)arg;
	static char buf[65536];
	size_t total = 0;
	ssize_t got;
	while (total < MIB && (got = read(fd, buf, sizeof buf)) > 0)
		total += (size_t)got;
	return NULL;
}

static int rule_write(void)
{
	int pipefd[2];
	if (pipe(pipefd) < 0)
		die("pipe");
	pthread_t reader = start(drain_pipe, &pipefd[0]);
	char *data = calloc(MIB, 1);
	if (data == NULL)
		die("calloc");
	ssize_t put = write(pipefd[1], data, MIB);
	check(pthread_join(reader, NULL), "pthread_join");
	printf("one write() of %d bytes to a pipe returned %zd\n", MIB, put);
	free(data);
	close(pipefd[0]);
	close(pipefd[1]);
	return put == MIB ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- kinds: statically initialised mutex types ------------------------------ */

static pthread_mutex_t recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static pthread_mutex_t errorcheck = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static atomic_int holder_ready, holder_release;

/* Holds the mutex it is given until told to let go. */
static void *hold(void *arg)
{
	pthread_mutex_t *m = arg;
	check(pthread_mutex_lock(m), "pthread_mutex_lock");
	atomic_store(&holder_ready, 1);
	while (!atomic_load(&holder_release))
		usleep(1000);
	check(pthread_mutex_unlock(m), "pthread_mutex_unlock");
	return NULL;
}

/* Lock m while another thread holds it (so that the lock queues), then
 * as its type allows. */
static void contend(pthread_mutex_t *m, const char *name)
{
	atomic_store(&holder_ready, 0);
	atomic_store(&holder_release, 0);
	pthread_t holder = start(hold, m);
	if (!wait_for(&holder_ready, 1000))
		die("the holder never took the mutex");
	atomic_store(&holder_release, 1);
	check(pthread_mutex_lock(m), "pthread_mutex_lock, queued behind the holder");
	check(pthread_join(holder, NULL), "pthread_join");
	printf("%s: locked after waiting for another thread\n", name);
}

static int rule_kinds(void)
{
	contend(&recursive, "recursive");
	int again = pthread_mutex_lock(&recursive);
	int once = pthread_mutex_unlock(&recursive);
	int twice = pthread_mutex_unlock(&recursive);
	printf("recursive: its owner locking it again: %s; unlocking twice: %s, %s\n",
	       strerror(again), strerror(once), strerror(twice));
	contend(&errorcheck, "error-checking");
	printf("error-checking: its owner locking it again: %s\n",
	       strerror(pthread_mutex_lock(&errorcheck)));
	check(pthread_mutex_unlock(&errorcheck), "pthread_mutex_unlock");
	printf("error-checking: unlocking it unlocked: %s\n", strerror(pthread_mutex_unlock(&errorcheck)));
	return EXIT_SUCCESS;
}

/* ---- timed: timed locks and waits park ------------------------------------- */

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static atomic_int ticking, ticks;

/* Counts the 10 ms sleeps it manages while the others wait: a wait that
 * blocked the kernel thread would leave it none. */
static void *tick(void *arg)
{
	(void)arg;
	while (atomic_load(&ticking)) {
		usleep(10000);
		atomic_fetch_add(&ticks, 1);
	}
	return NULL;
}

/* abstime 100 ms from now on clock. */
static struct timespec in_100_ms(clockid_t clock)
{
	struct timespec t;
	clock_gettime(clock, &t);
	t.tv_nsec += 100 * 1000 * 1000;
	if (t.tv_nsec >= 1000 * 1000 * 1000) {
		t.tv_sec++;
		t.tv_nsec -= 1000 * 1000 * 1000;
	}
	return t;
}

static void timed(const char *name, int (*wait)(void))
{
	atomic_store(&ticks, 0);
	int err = wait();
	printf("%s: %s, while another thread slept 10 ms %d times\n", name, strerror(err),
	       atomic_load(&ticks));
}

static int timedlock(void)
{
	struct timespec t = in_100_ms(CLOCK_REALTIME);
	return pthread_mutex_timedlock(&held, &t);
}

static int clocklock(void)
{
	struct timespec t = in_100_ms(CLOCK_MONOTONIC);
	return pthread_mutex_clocklock(&held, CLOCK_MONOTONIC, &t);
}

static int clockwait(void)
{
	struct timespec t = in_100_ms(CLOCK_MONOTONIC);
	check(pthread_mutex_lock(&held), "pthread_mutex_lock");
	int err = pthread_cond_clockwait(&never, &held, CLOCK_MONOTONIC, &t);
	check(pthread_mutex_unlock(&held), "pthread_mutex_unlock");
	return err;
}

static int rule_timed(void)
{
	atomic_store(&holder_release, 0);
	pthread_t holder = start(hold, &held);
	if (!wait_for(&holder_ready, 1000))
		die("the holder never took the mutex");
	atomic_store(&ticking, 1);
	pthread_t ticker = start(tick, NULL);
	timed("pthread_mutex_timedlock", timedlock);
	timed("pthread_mutex_clocklock", clocklock);
	atomic_store(&holder_release, 1);
	check(pthread_join(holder, NULL), "pthread_join");
	timed("pthread_cond_clockwait", clockwait);
	atomic_store(&ticking, 0);
	check(pthread_join(ticker, NULL), "pthread_join");
	return EXIT_SUCCESS;
}

/* ---- fclose, close_range, dup2, worker: closes the hub must hear of -------- */

static int pair[2];
static atomic_int got_byte;

static void *read_a_byte(void *arg)
{
	(void)arg;
	char c;
	if (read(pair[0], &c, 1) == 1)
		atomic_store(&got_byte, 1);
	return NULL;
}

static void *close_it(void *arg)
{
	return (void *)(intptr_t)close(*(int *)arg);
}

/* The pipe a reader waited on is closed one way or another, and a new pipe
 * takes its number (dup2() puts it there itself); a reader of the new pipe
 * must hear of the byte written to it. (A pipe, because the patch makes
 * pipe()'s fds green; socketpair() it leaves alone.) */
static int rule_close(const char *how)
{
	if (pipe(pair) < 0)
		die("pipe");
	int old = pair[0], old_writer = pair[1];
	pthread_t reader = start(read_a_byte, NULL);
	usleep(10000);	/* the reader waits: the hub watches the fd */
	if (write(pair[1], "x", 1) != 1)
		die("write");
	check(pthread_join(reader, NULL), "pthread_join");
	/* The writer stays open meanwhile: its close would wake the hub about
	 * the old pipe, and the hub would stop watching it on its own. */
	if (strcmp(how, "fclose") == 0) {
		FILE *f = fdopen(old, "r");
		if (f == NULL || fclose(f) != 0)
			die("fclose");
	} else if (strcmp(how, "close_range") == 0) {
		if (close_range((unsigned)old, (unsigned)old, 0) < 0)
			die("close_range");
	} else if (strcmp(how, "worker") == 0) {
		if (offload_run(close_it, &old) != NULL)	/* close()'s 0 is NULL */
			die("close on a worker thread");
	}
	if (pipe(pair) < 0)
		die("pipe");
	if (strcmp(how, "dup2") == 0) {
		if (dup2(pair[0], old) < 0 || close(pair[0]) < 0)
			die("dup2");
		pair[0] = old;
	}
	close(old_writer);
	if (pair[0] != old)
		printf("(the number %d did not come back: the new pipe reads from %d)\n", old, pair[0]);
	atomic_store(&got_byte, 0);
	reader = start(read_a_byte, NULL);
	usleep(10000);
	if (write(pair[1], "y", 1) != 1)
		die("write");
	bool woke = wait_for(&got_byte, 1000);
	printf("after %s, a reader of a new pipe with the same number %s\n", how,
	       woke ? "got its byte" : "never woke");
	if (!woke)
		exit(EXIT_FAILURE);	/* the reader is parked for good */
	check(pthread_join(reader, NULL), "pthread_join");
	close(pair[0]);
	close(pair[1]);
	offload_stop();
	return EXIT_SUCCESS;
}

/* ---- dup: a pipe left open by a dup ----------------------------------------- */

static int rule_dup(void)
{
	if (pipe(pair) < 0)
		die("pipe");
	pthread_t reader = start(read_a_byte, NULL);
	usleep(10000);
	if (write(pair[1], "x", 1) != 1)
		die("write");
	check(pthread_join(reader, NULL), "pthread_join");
	int copy = dup(pair[0]);
	if (copy < 0 || close(pair[0]) < 0)
		die("dup");
	if (write(pair[1], "y", 1) != 1)	/* readable, and nobody reads */
		die("write");
	double cpu = now_s(CLOCK_PROCESS_CPUTIME_ID);
	usleep(500000);
	cpu = now_s(CLOCK_PROCESS_CPUTIME_ID) - cpu;
	printf("with a dup of a closed, readable pipe open, a 500 ms sleep used %.0f ms of CPU\n",
	       cpu * 1e3);
	close(copy);
	close(pair[1]);
	return EXIT_SUCCESS;
}

/* ---- burst and cancelled: the offload pool ---------------------------------- */

static atomic_int running, most_at_once;

/* A job that waits, up to 500 ms, for the others of its burst to run too;
 * it notes how many ran at once. */
static void *meet_the_others(void *arg)
{
	int burst = (int)(intptr_t)arg;
	int now = atomic_fetch_add(&running, 1) + 1;
	for (int most = atomic_load(&most_at_once); now > most &&
	     !atomic_compare_exchange_weak(&most_at_once, &most, now);)
		continue;
	for (int waited = 0; atomic_load(&running) < burst && waited < 500; waited++)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	atomic_fetch_sub(&running, 1);
	return arg;
}

static void *offload_one(void *arg)
{
	return offload_run(meet_the_others, arg);
}

static int rule_burst(void)
{
	/* One worker exists and is idle, as after any first job. */
	offload_run(meet_the_others, (void *)(intptr_t)1);
	pthread_t threads[4];
	for (int i = 0; i < 4; i++)
		threads[i] = start(offload_one, (void *)(intptr_t)4);
	for (int i = 0; i < 4; i++)
		check(pthread_join(threads[i], NULL), "pthread_join");
	printf("four jobs offloaded at once: at most %d ran at once\n", atomic_load(&most_at_once));
	offload_stop();
	return EXIT_SUCCESS;
}

static atomic_int go_on, job_saw_it;

/* On a worker: waits for main's word, 2 s at most. */
static void *wait_for_main(void *arg)
{
	for (int waited = 0; !atomic_load(&go_on) && waited < 2000; waited++)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	atomic_store(&job_saw_it, atomic_load(&go_on));
	return arg;
}

static void *offload_and_wait(void *arg)
{
	if (offload_run(wait_for_main, arg) == NULL && errno == ECANCELED)
		printf("the cancelled thread's offload_run returned ECANCELED\n");
	return NULL;
}

/* A green thread is cancelled while its job runs. Until the job is done it
 * cannot go on (the job may use its stack), but the others must: main
 * sleeps, then gives the job the word it waits for. */
static int rule_cancelled(void)
{
	pthread_t waiter = start(offload_and_wait, NULL);
	usleep(10000);	/* the job runs */
	co_cancel_all();
	usleep(10000);
	atomic_store(&go_on, 1);
	check(pthread_join(waiter, NULL), "pthread_join");
	printf("main slept 10 ms after cancelling the thread, and the job %s\n",
	       atomic_load(&job_saw_it) ? "saw its word" : "waited 2 s for nothing: the hub was stuck");
	offload_stop();
	return atomic_load(&job_saw_it) ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *rule = argc == 2 ? argv[1] : "";
	if (strcmp(rule, "accept") == 0)
		return rule_accept();
	if (strcmp(rule, "write") == 0)
		return rule_write();
	if (strcmp(rule, "kinds") == 0)
		return rule_kinds();
	if (strcmp(rule, "timed") == 0)
		return rule_timed();
	if (strcmp(rule, "fclose") == 0 || strcmp(rule, "close_range") == 0 ||
	    strcmp(rule, "dup2") == 0 || strcmp(rule, "worker") == 0)
		return rule_close(rule);
	if (strcmp(rule, "dup") == 0)
		return rule_dup();
	if (strcmp(rule, "burst") == 0)
		return rule_burst();
	if (strcmp(rule, "cancelled") == 0)
		return rule_cancelled();
	fprintf(stderr, "usage: patch_rules accept|write|kinds|timed|fclose|close_range|dup2|"
		"worker|dup|burst|cancelled\n");
	return 2;
}
