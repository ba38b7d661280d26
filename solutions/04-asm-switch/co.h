/* Chapter 04: coroutines on a context switch written in assembly. A coroutine
 * is a function running on a stack of its own; it runs until it calls
 * co_yield(), and a round-robin scheduler then runs the next one. One thread,
 * no preemption: a coroutine that never yields keeps the others waiting. */
#ifndef CO_H
#define CO_H

#include <stdbool.h>
#include <stddef.h>

/* Each coroutine's stack. Locals, and every function a coroutine calls,
 * must fit: below the stack is a guard page, and overflowing into it kills
 * the program with SIGSEGV instead of silently corrupting memory. */
enum { CO_STACK_SIZE = 64 * 1024 };

typedef void co_fn(void *arg);

/* Make a coroutine that will run fn(arg), after those already waiting.
 * It ends when fn returns, and its memory is freed then. Returns false,
 * with errno set, when out of memory. */
bool co_spawn(co_fn *fn, void *arg);

/* Let every other waiting coroutine run once, then carry on. Outside a
 * coroutine it does nothing. */
void co_yield(void);

/* Run the coroutines in turn until none is left. */
void co_run(void);

/* How many coroutines exist (waiting or running). */
size_t co_count(void);

#endif
