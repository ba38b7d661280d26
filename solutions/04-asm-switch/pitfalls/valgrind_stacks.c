/* Chapter 04 pitfall: Valgrind's "client switching stacks?" warning.
 *
 * Valgrind follows the stack pointer. When it moves by more than
 * --max-stackframe (2 MB by default) and does not land in a stack it was told
 * about, Valgrind guesses at a stack switch, warns, and from then on may
 * report nonsense about the stacks. Coroutine stacks come from mmap(), far
 * (gigabytes) from the main thread's stack, so every switch moves that far.
 * build.mk links this file twice:
 *
 *   valgrind_stacks              with co.c, which registers each stack
 *                                (VALGRIND_STACK_REGISTER, stack_tools.h)
 *   valgrind_stacks_unregistered with pitfalls/co_unregistered.c, the same
 *                                co.c built with the requests compiled out */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "co.h"

static uintptr_t main_stack;

static void worker(void *arg)
{
	const char *name = arg;
	char here;
	uintptr_t at = (uintptr_t)&here;
	uintptr_t distance = at < main_stack ? main_stack - at : at - main_stack;
	printf("%s: running %zu MB %s main's stack\n", name, (size_t)(distance >> 20),
	       at < main_stack ? "below" : "above");
	for (int i = 0; i < 3; i++)
		co_yield();
	printf("%s: done\n", name);
}

int main(void)
{
	char here;
	main_stack = (uintptr_t)&here;
	/* Line-buffered into a pipe too, so lines and warnings come in order. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!co_spawn(worker, "first") || !co_spawn(worker, "second")) {
		perror("valgrind_stacks: co_spawn");
		return 1;
	}
	co_run();
	return 0;
}
