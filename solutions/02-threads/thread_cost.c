/* What a thread costs: the time to create and join one, and the memory a
 * thousand sleeping threads take, reserved (VmSize) against resident
 * (VmRSS), with the default stack and with the echo server's 64 KiB one.
 * Run it: build/solutions/02-threads/thread_cost */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CREATE_ROUNDS = 20000, SLEEPERS = 1000, SMALL_STACK = 64 * 1024 };

static void die(const char *what, int err)
{
	fprintf(stderr, "thread_cost: %s: %s\n", what, strerror(err));
	exit(EXIT_FAILURE);
}

/* The pthread functions return an error number instead of setting errno. */
static void check(int err, const char *what)
{
	if (err != 0)
		die(what, err);
}

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *do_nothing(void *arg)
{
	return arg;
}

/* Sleepers wait here until main has read the memory figures. */
static pthread_barrier_t all_started, may_exit;

static void *sleeper(void *arg)
{
	/* pthread_barrier_wait returns 0, or PTHREAD_BARRIER_SERIAL_THREAD to
	 * one of the waiters; nothing else can happen with a valid barrier. */
	pthread_barrier_wait(&all_started);
	pthread_barrier_wait(&may_exit);
	return arg;
}

/* A field of /proc/self/status, in KiB. */
static long status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		die("fopen /proc/self/status", errno);
	char line[256];
	long kib = -1;
	size_t len = strlen(field);
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, field, len) == 0 && line[len] == ':')
			kib = atol(line + len + 1);
	fclose(f);
	return kib;
}

static void measure(const char *label, const pthread_attr_t *attr)
{
	double start = seconds_now();
	for (int i = 0; i < CREATE_ROUNDS; i++) {
		pthread_t thread;
		check(pthread_create(&thread, attr, do_nothing, NULL), "pthread_create");
		check(pthread_join(thread, NULL), "pthread_join");
	}
	double per_thread_us = (seconds_now() - start) * 1e6 / CREATE_ROUNDS;

	long size_before = status_kib("VmSize"), rss_before = status_kib("VmRSS");
	pthread_t *threads = malloc(SLEEPERS * sizeof *threads);
	if (threads == NULL)
		die("malloc", errno);
	check(pthread_barrier_init(&all_started, NULL, SLEEPERS + 1), "pthread_barrier_init");
	check(pthread_barrier_init(&may_exit, NULL, SLEEPERS + 1), "pthread_barrier_init");
	for (int i = 0; i < SLEEPERS; i++) {
		check(pthread_create(&threads[i], attr, sleeper, NULL), "pthread_create");
	}
	pthread_barrier_wait(&all_started);
	long size_kib = status_kib("VmSize") - size_before;
	long rss_kib = status_kib("VmRSS") - rss_before;
	pthread_barrier_wait(&may_exit);
	for (int i = 0; i < SLEEPERS; i++)
		check(pthread_join(threads[i], NULL), "pthread_join");
	check(pthread_barrier_destroy(&all_started), "pthread_barrier_destroy");
	check(pthread_barrier_destroy(&may_exit), "pthread_barrier_destroy");
	free(threads);

	printf("%-16s create+join %6.1f us   %d threads: %8.1f KiB reserved, %6.1f KiB resident each\n",
	       label, per_thread_us, SLEEPERS, (double)size_kib / SLEEPERS, (double)rss_kib / SLEEPERS);
}

int main(void)
{
	pthread_attr_t attr;
	check(pthread_attr_init(&attr), "pthread_attr_init");
	size_t stack;
	check(pthread_attr_getstacksize(&attr, &stack), "pthread_attr_getstacksize");
	char label[32];
	snprintf(label, sizeof label, "default (%zu KiB)", stack / 1024);
	measure(label, &attr);

	check(pthread_attr_setstacksize(&attr, SMALL_STACK), "pthread_attr_setstacksize");
	measure("64 KiB stack", &attr);
	check(pthread_attr_destroy(&attr), "pthread_attr_destroy");
	return EXIT_SUCCESS;
}
