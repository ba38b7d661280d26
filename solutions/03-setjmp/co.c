/* Chapter 03: coroutines on setjmp/longjmp; see co.h.
 *
 * _setjmp() saves where a coroutine is (its registers, stack pointer and
 * resume address) and _longjmp() goes back there, from any stack. What they
 * cannot do is start a function on a brand-new stack: that takes the few
 * lines of assembly in start_on_stack(). The underscore says what we want:
 * no saving and restoring of the signal mask, which would be a system call on
 * every switch. Plain setjmp() does that on the BSDs and macOS (glibc's does
 * not), and sigsetjmp(env, 1) does it everywhere. */

/* With _FORTIFY_SOURCE (Ubuntu's compilers turn it on by default), glibc
 * swaps longjmp for __longjmp_chk, which aborts with "longjmp causes
 * uninitialized stack frame" when the target's stack pointer is below the
 * current one: a jump to a deeper frame of the same stack would be a bug.
 * Between stacks, it is how every switch into a coroutine looks. */
#undef _FORTIFY_SOURCE

#include "co.h"

#include <errno.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>

#include "stack_tools.h"

struct co {
	jmp_buf context;        /* where it left off in co_yield() */
	co_fn *fn;
	void *arg;
	bool started;
	bool finished;
	char *stack;            /* CO_STACK_SIZE bytes from malloc() */
	struct stack_tools tools;
	struct co *next;        /* in the run queue */
};

/* The scheduler runs on the thread's own stack, in co_run(). */
static struct {
	struct co *head, *tail; /* the run queue: waiting coroutines, in turn */
	struct co *current;     /* the one running, or NULL in the scheduler */
	size_t count;
	jmp_buf context;        /* where co_run() waits for the current one */
	struct stack_tools tools;
	const void *stack_low;  /* the scheduler's stack, for ASan */
	size_t stack_size;
} sched;

static void enqueue(struct co *co)
{
	co->next = NULL;
	if (sched.tail != NULL)
		sched.tail->next = co;
	else
		sched.head = co;
	sched.tail = co;
}

static struct co *dequeue(void)
{
	struct co *co = sched.head;
	sched.head = co->next;
	if (sched.head == NULL)
		sched.tail = NULL;
	return co;
}

bool co_spawn(co_fn *fn, void *arg)
{
	struct co *co = calloc(1, sizeof *co);
	char *stack = malloc(CO_STACK_SIZE);
	if (co == NULL || stack == NULL) {
		free(co);
		free(stack);
		errno = ENOMEM;
		return false;
	}
	co->fn = fn;
	co->arg = arg;
	co->stack = stack;
	stack_tools_created(&co->tools, stack, CO_STACK_SIZE);
	enqueue(co);
	sched.count++;
	return true;
}

static void co_free(struct co *co)
{
	stack_tools_destroyed(&co->tools);
	free(co->stack);
	free(co);
	sched.count--;
}

size_t co_count(void)
{
	return sched.count;
}

void co_yield(void)
{
	struct co *co = sched.current;
	if (co == NULL)
		return;
	/* EXERCISE yield: save where this coroutine is, and jump to the scheduler.
	 * _setjmp(co->context) returns 0 when it saves the context; call
	 * stack_tools_leave() (not for good: we come back) for the scheduler's
	 * stack, sched.stack_low and sched.stack_size, then _longjmp() to
	 * sched.context. When the scheduler later jumps back to co->context,
	 * _setjmp returns again, this time non-zero: call stack_tools_arrived()
	 * for co->tools (NULL, NULL) and return to the coroutine's code.
	 * Hint: _setjmp returns twice; the if tells the two returns apart.
	 * Tests: runs_coroutines_in_turn_order, locals_survive_yields.
	 */
	if (_setjmp(co->context) == 0) {
		stack_tools_leave(&co->tools, false, sched.stack_low, sched.stack_size);
		_longjmp(sched.context, 1);
	}
	stack_tools_arrived(&co->tools, NULL, NULL);
	/* END yield */
}

/* Switch the stack pointer to top and call entry there; never returns.
 * setjmp cannot do this for us: glibc mangles the stack pointer it keeps in a
 * jmp_buf (XOR with a per-process secret, then a rotation: PTR_MANGLE), so
 * we cannot write our own into one. */
static _Noreturn void start_on_stack(char *top, void (*entry)(void))
{
#if defined(__x86_64__)
	/* top is 16-byte aligned; we push an 8-byte return address of 0, so
	 * entry starts with rsp + 8 a multiple of 16, as the System V x86-64 ABI
	 * (section 3.2.2) requires. A return address of 0 and rbp = 0 end the
	 * chain of frames: debuggers and backtrace() stop there instead of
	 * reading past the top of the stack. */
	__asm__ volatile("mov %0, %%rsp\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "push $0\n\t"
			 "jmp *%1"
			 : : "r"(top), "r"(entry) : "memory");
#elif defined(__aarch64__)
	/* AAPCS64: sp is always 16-byte aligned, and the return address goes
	 * in the link register (x30), not on the stack. x29 = x30 = 0 end the
	 * chain of frames, as on x86-64. */
	__asm__ volatile("mov sp, %0\n\t"
			 "mov x29, xzr\n\t"
			 "mov x30, xzr\n\t"
			 "br %1"
			 : : "r"(top), "r"(entry) : "memory");
#else
#error "start_on_stack() needs a few lines of assembly for this CPU"
#endif
	__builtin_unreachable();
}

/* A coroutine's first frame, on its own stack. */
static _Noreturn void co_entry(void)
{
	/* EXERCISE entry: run the coroutine's function, then end it.
	 * We arrived on a new stack: call stack_tools_arrived() for
	 * sched.current->tools, passing &sched.stack_low and &sched.stack_size
	 * so ASan tells us where the scheduler's stack is. Call fn(arg). When it
	 * returns, mark the coroutine finished, call stack_tools_leave() for
	 * co->tools, for good (true: this stack will not run again, the
	 * scheduler frees it), with the bounds of the stack we go to, the
	 * scheduler's: sched.stack_low and sched.stack_size. Then _longjmp() to
	 * sched.context. Never return from this function: there is no caller on
	 * this stack to return to.
	 * Hint: read sched.current again after fn returns; do not keep fields of
	 * it in locals across the call.
	 * Tests: runs_coroutines_in_turn_order, ten_thousand_coroutines_come_and_go.
	 */
	struct co *co = sched.current;
	stack_tools_arrived(&co->tools, &sched.stack_low, &sched.stack_size);
	co->fn(co->arg);
	co = sched.current;
	co->finished = true;
	stack_tools_leave(&co->tools, true, sched.stack_low, sched.stack_size);
	_longjmp(sched.context, 1);
	/* STUB: abort(); */
	/* END entry */
}

/* Switch from the scheduler to co: its first start, or where it yielded. */
static _Noreturn void resume(struct co *co)
{
	stack_tools_leave(&sched.tools, false, co->stack, CO_STACK_SIZE);
	if (!co->started) {
		co->started = true;
		start_on_stack(co->stack + CO_STACK_SIZE, co_entry);
	}
	_longjmp(co->context, 1);
}

void co_run(void)
{
	while (sched.head != NULL) {
		struct co *co = dequeue();
		sched.current = co;
		/* EXERCISE run: give co its turn, and take control back after it.
		 * _setjmp(sched.context) saves the scheduler's place and returns 0:
		 * then call resume(co), which jumps onto the coroutine's stack. The
		 * coroutine comes back here with _longjmp(sched.context, 1), when it
		 * yields or ends, and _setjmp returns 1: call stack_tools_arrived()
		 * for sched.tools (NULL, NULL). Then, if co has finished, co_free()
		 * it; otherwise enqueue() it for another turn.
		 * Hint: co is not changed between _setjmp and the jump back, so it
		 * keeps its value (C11 7.13.2.1 says which locals do not).
		 * Tests: runs_coroutines_in_turn_order, ten_thousand_coroutines_come_and_go.
		 */
		if (_setjmp(sched.context) == 0)
			resume(co);
		stack_tools_arrived(&sched.tools, NULL, NULL);
		if (co->finished)
			co_free(co);
		else
			enqueue(co);
		/* STUB: (void)resume; */
		/* STUB: co_free(co); */
		/* END run */
		sched.current = NULL;
	}
}
