/* Chapter 04 pitfall: chapter 03's setjmp switch, built with _FORTIFY_SOURCE.
 *
 * build.mk compiles this one file with -D_FORTIFY_SOURCE=2 (as Ubuntu's
 * compilers do by default). glibc then turns _longjmp into __longjmp_chk,
 * which aborts when the stack pointer it is about to load is below the
 * current one and not on a signal stack: on one stack that means a jump into
 * a frame that has already returned. Between stacks it is simply every switch
 * to a stack at a lower address: on Linux that is usually each resumption of
 * a coroutine, whose mmap()ed stack lies far below the main thread's. Chapter
 * 03's co.c says #undef _FORTIFY_SOURCE for this reason; this file does not,
 * on purpose. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

enum { STACK_SIZE = 64 * 1024 };

static jmp_buf scheduler, coroutine;
static char *scheduler_stack;	/* where main's locals are */

/* Load sp = top and call entry there, as chapter 03 does; never returns. */
static _Noreturn void start_on_stack(char *top, void (*entry)(void))
{
#if defined(__x86_64__)
	__asm__ volatile("mov %0, %%rsp\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "call *%1\n\t"
			 "ud2"
			 : : "r"(top), "r"(entry) : "memory");
#elif defined(__aarch64__)
	__asm__ volatile("mov sp, %0\n\t"
			 "mov x29, xzr\n\t"
			 "blr %1\n\t"
			 "brk #0"
			 : : "r"(top), "r"(entry) : "memory");
#else
#error "start_on_stack() needs a few lines of assembly for this CPU"
#endif
	__builtin_unreachable();
}

/* Which way a jump from the stack holding `here` to the one at `there` goes. */
static const char *direction(const void *here, const void *there)
{
	return (const char *)there < (const char *)here ? "down" : "up";
}

static _Noreturn void coroutine_body(void)
{
	char here;
	printf("coroutine: yielding with _longjmp, %s to the scheduler's stack\n",
	       direction(&here, scheduler_stack));
	if (_setjmp(coroutine) == 0)
		_longjmp(scheduler, 1);
	printf("coroutine: resumed (only when _FORTIFY_SOURCE is off)\n");
	_longjmp(scheduler, 2);
}

int main(void)
{
	/* Line-buffered even into a pipe: every line is out before the abort. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	char here;
	scheduler_stack = &here;
	char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED) {
		perror("fortify_longjmp: mmap");
		return 1;
	}
	printf("scheduler: its stack is near %p, the coroutine's at %p..%p\n",
	       (void *)&here, (void *)stack, (void *)(stack + STACK_SIZE));
	int turn = _setjmp(scheduler);
	if (turn == 0)
		start_on_stack(stack + STACK_SIZE, coroutine_body);
	if (turn == 1) {
		printf("scheduler: resuming the coroutine with _longjmp, %s to its stack\n",
		       direction(&here, stack));
		_longjmp(coroutine, 1);
	}
	printf("scheduler: the coroutine ran to its end\n");
	return 0;
}
