/* Chapter 05: the scheduler's inside, shared by co.c (coroutines and the run
 * queue), hub.c (sockets and timers) and inspect.c (dump and watchdog). Not
 * for programs using coroutines: they include co.h. */
#ifndef SCHED_H
#define SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "co.h"
#include "stack_tools.h"
#include "timers.h"

enum co_state {
	CO_RUNNABLE,    /* in the run queue */
	CO_RUNNING,
	CO_WAITING,     /* parked until co_wake() */
	CO_FINISHED,
};

/* What a parked coroutine waits for, for co_dump(). */
struct co_wait {
	const char *what;       /* "read", "write", "sleep", "join" */
	int fd;                 /* for read and write, else -1 */
	co_id other;            /* for join */
};

/* A coroutine's name, the terminating NUL included: a whole number of 8-byte
 * words, which co.c publishes one by one to the watchdog thread. */
enum { CO_NAME_SIZE = 48 };

struct co {
	co_id id;
	char name[CO_NAME_SIZE];
	enum co_state state;
	void *sp;               /* stack pointer while not running */
	co_fn *fn;
	void *arg;
	char *mapping;          /* guard page, stack and this struct, from mmap() */
	size_t mapping_size;
	char *stack;            /* the usable stack: stack_size bytes */
	size_t stack_size;
	struct stack_tools tools;
	struct co_wait wait;
	struct timer timer;     /* armed at or before deadline (hub.c) */
	int64_t deadline;       /* of the wait it is parked in; -1: none */
	int wake_result;        /* what co_park() returns: 0 or an errno */
	bool cancelled;
	co_id joiner;           /* a coroutine waiting for this one to end */
	struct co *next_runnable;
	struct co *prev, *next; /* the list of all coroutines */
};

/* The running coroutine, NULL in the scheduler. */
struct co *co_current(void);

/* Park the running coroutine until co_wake(): fill in co->wait first. Returns
 * the result given to co_wake(). A cancelled coroutine returns ECANCELED at
 * once. */
int co_park(void);

/* Park the running coroutine until co_wake(), cancelled or not: for a wait
 * that must not be cut short, such as a coroutine's wait for the kernel to
 * be done with a buffer on its stack (chapter 09). Linux's own name for such
 * a sleep: TASK_UNINTERRUPTIBLE, the D state of a process in the middle of
 * I/O. A cancel still wakes it, with ECANCELED: wait again until what you
 * wait for is true. */
int co_park_uninterruptible(void);

/* hub.c: co is about to be freed; its timer must leave the heap. */
void hub_forget_co(struct co *co);

/* Make a parked coroutine runnable; co_park() will return result. */
void co_wake(struct co *co, int result);

/* The first of all coroutines, for walking the list with ->next. */
struct co *co_all(void);

/* For the watchdog thread, safe to call from any thread: switches so far,
 * and the running coroutine's id (0 while the scheduler runs) with a copy
 * of its name in name, as the hub thread last published them. */
uint64_t co_switches(void);
co_id co_running(char name[CO_NAME_SIZE]);

/* co_dump(), but only the first most coroutines, then how many more. */
void co_dump_first(FILE *out, size_t most);

#endif
