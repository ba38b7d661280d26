/* Chapter 05: coroutines on an event hub. Each coroutine runs on a stack of
 * its own until it waits: for a socket (green.h), for time (co_sleep), or
 * for another coroutine (co_join). Waiting parks it and switches to the
 * scheduler, which runs the next runnable coroutine; when none is, the hub
 * sleeps in the kernel (epoll_wait, or chapter 09's io_uring_enter) until a
 * socket is ready, a request is done, or a timer is due. One thread, no
 * preemption: a coroutine that never waits, or calls something that really
 * blocks, keeps everyone else waiting. */
#ifndef CO_H
#define CO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Each coroutine's virtual stack, with a guard page below it. Only the
 * pages a coroutine touches become resident. */
enum { CO_STACK_SIZE = 64 * 1024 };

typedef void co_fn(void *arg);

/* A coroutine's number: never 0, never reused. */
typedef uint64_t co_id;

/* Make a coroutine that will run fn(arg); it runs after those already
 * runnable. It ends when fn returns, and its memory is freed then. Returns 0,
 * with errno set, when out of memory. */
co_id co_spawn(co_fn *fn, void *arg);

/* Wait until coroutine id has ended: returns 0 at once if it already has.
 * -1 with errno EDEADLK for the caller itself, ECANCELED if cancelled. */
int co_join(co_id id);

/* Let every other runnable coroutine run once, then carry on. The hub looks
 * at sockets and timers once per round of the run queue, without sleeping,
 * so coroutines that keep yielding delay those that wait for I/O or time by
 * a round, never for ever (gevent.sleep(0) does the same). */
void co_yield(void);

/* Sleep for ms milliseconds at least (0: co_yield). Returns 0, or -1 with
 * errno ECANCELED when cancelled. */
int co_sleep(long ms);

/* Milliseconds on the monotonic clock: the clock of every deadline, such as
 * green_read_until()'s (chapter 07: it was internal before). */
int64_t co_now_ms(void);

/* The co_now_ms() time by which ms milliseconds will surely have passed: a
 * deadline that never comes early. */
int64_t co_deadline_after(long ms);

/* The running coroutine, or 0 outside any. */
co_id co_self(void);

/* Name the running coroutine, for co_dump(): a plain copy, not printf-like,
 * because formatting takes a few KiB of stack, and every page of stack a
 * coroutine touches stays resident. */
void co_set_name(const char *name);

/* How many coroutines exist. */
size_t co_count(void);

/* Run until every coroutine has ended: returns 0. If they all wait and
 * nothing can ever wake them (no socket, no timer), prints "co: all
 * coroutines are asleep" with co_dump()'s first 20 coroutines (and how many
 * more) to stderr and returns -1; -1 too if the hub cannot start (reported
 * on stderr). */
int co_run(void);

/* Cancel coroutine id: whatever it waits for, it wakes with ECANCELED, and so
 * does every wait it starts afterwards, so that it returns up its calls,
 * cleaning up as it goes (closing its socket), and ends. Nothing stops it by
 * force: a coroutine that never waits again runs to its end. Returns 0, or -1
 * with errno ESRCH when no such coroutine runs any more. (Chapter 07.) */
int co_cancel(co_id id);

/* Cancel every coroutine but the running one: whatever each waits for, it
 * wakes with ECANCELED, and so does every wait it starts afterwards, so that
 * it unwinds and ends. */
void co_cancel_all(void);

/* Print every coroutine: its number, name, state, what it waits for, and
 * how deep its stack has ever been. */
void co_dump(FILE *out);

/* Start a watchdog thread that reports, to out, a coroutine that has run for
 * more than ms milliseconds without waiting: it is holding up every other
 * coroutine (gevent's max_blocking_time, 0.1 s by default). */
int co_watchdog(long ms, FILE *out);

#endif
