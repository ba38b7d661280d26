/* Chapter 02's race, made visible: THREADS threads each add 1 to a shared
 * counter ROUNDS times, three ways. Only the unprotected one loses counts.
 * Run it: build/solutions/02-threads/counter_race */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { THREADS = 4, ROUNDS = 5000000 };

/* The threads start counting together: otherwise the first may be done
 * before the last has started, and they would never collide. */
static pthread_barrier_t start_line;

/* volatile makes the compiler load, add and store on every round, as it would
 * for a counter that other code reads; it does not make the three atomic. */
static volatile long unprotected;
static atomic_long atomic_count;
static long locked;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *add_unprotected(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < ROUNDS; i++)
		unprotected++;
	return NULL;
}

static void *add_atomic(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < ROUNDS; i++)
		atomic_fetch_add(&atomic_count, 1);
	return NULL;
}

static void *add_locked(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start_line);
	/* Locking a valid, unlocked default mutex cannot fail (pthread_mutex_lock(3)). */
	for (int i = 0; i < ROUNDS; i++) {
		pthread_mutex_lock(&lock);
		locked++;
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run THREADS threads of add() and report the counter it leaves. */
static void race(const char *name, void *(*add)(void *), long (*result)(void))
{
	pthread_t threads[THREADS];
	int err = pthread_barrier_init(&start_line, NULL, THREADS);
	if (err != 0) {
		fprintf(stderr, "counter_race: pthread_barrier_init: %s\n", strerror(err));
		exit(EXIT_FAILURE);
	}
	double start = seconds_now();
	for (int i = 0; i < THREADS; i++) {
		err = pthread_create(&threads[i], NULL, add, NULL);
		if (err != 0) {
			fprintf(stderr, "counter_race: pthread_create: %s\n", strerror(err));
			exit(EXIT_FAILURE);
		}
	}
	for (int i = 0; i < THREADS; i++) {
		err = pthread_join(threads[i], NULL);
		if (err != 0) {
			fprintf(stderr, "counter_race: pthread_join: %s\n", strerror(err));
			exit(EXIT_FAILURE);
		}
	}
	pthread_barrier_destroy(&start_line);	/* cannot fail: nobody waits on it now */
	long got = result();
	long expected = (long)THREADS * ROUNDS;
	printf("%-12s %9ld of %9ld  (%5.1f%% lost)  %6.1f ms\n", name, got, expected,
	       100.0 * (double)(expected - got) / (double)expected, (seconds_now() - start) * 1e3);
}

static long unprotected_result(void) { return unprotected; }
static long atomic_result(void) { return atomic_load(&atomic_count); }
static long locked_result(void) { return locked; }

int main(void)
{
	printf("%d threads, each adding 1 to a shared counter %d times:\n", THREADS, ROUNDS);
	race("count++", add_unprotected, unprotected_result);
	race("atomic", add_atomic, atomic_result);
	race("mutex", add_locked, locked_result);
	return EXIT_SUCCESS;
}
