/* Chapter 04: coroutines on a context switch written in assembly; see co.h.
 *
 * co_switch() (switch_x86_64.S, switch_aarch64.S) saves the registers a
 * function must preserve on the current stack, stores the stack pointer,
 * loads another, and restores that stack's registers: a dozen instructions,
 * no system call, and nothing mangled. A new coroutine's stack is laid out
 * by hand so that the first switch to it "returns" into co_trampoline(). */
#include "co.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stack_tools.h"

/* Save the callee-saved registers on the current stack, store the stack
 * pointer in *from, load *to, restore what is saved there and continue where
 * that stack left off. */
void co_switch(void **from, void *const *to);

/* The floating-point control state as co_switch() saves it: on x86-64 MXCSR
 * in the low 32 bits and the x87 control word above; on AArch64 the FPCR. */
uint64_t co_fp_control_now(void);

#if defined(__aarch64__)
/* switch_aarch64.S: where a new coroutine's first switch lands; it sets the
 * link register to the trap (x19) and branches to co_trampoline (x20). */
void co_start(void);
#endif

struct co {
	void *sp;               /* its stack pointer while it is not running */
	co_fn *fn;
	void *arg;
	bool finished;
	char *mapping;          /* guard page + stack, from mmap() */
	size_t mapping_size;
	char *stack;            /* the usable CO_STACK_SIZE bytes */
	struct stack_tools tools;
	struct co *next;        /* in the run queue */
};

/* The scheduler runs on the thread's own stack, in co_run(). */
static struct {
	struct co *head, *tail; /* the run queue: waiting coroutines, in turn */
	struct co *current;     /* the one running, or NULL in the scheduler */
	size_t count;
	void *sp;               /* the scheduler's stack pointer while a coroutine runs */
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

/* Where a coroutine would go if co_trampoline() ever returned: the return
 * address of the first frame. Nothing may run on the stack after this, so
 * write(2) and abort(), not stdio. */
static _Noreturn void co_returned_past_trampoline(void)
{
	static const char msg[] = "co: coroutine returned past its trampoline\n";
	ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)ignored;
	abort();
}

/* A coroutine's first function, on its own stack. */
static _Noreturn void co_trampoline(void)
{
	struct co *co = sched.current;
	stack_tools_arrived(&co->tools, &sched.stack_low, &sched.stack_size);
	co->fn(co->arg);
	co = sched.current;
	co->finished = true;
	stack_tools_leave(&co->tools, true, sched.stack_low, sched.stack_size);
	co_switch(&co->sp, &sched.sp);
	/* The scheduler frees a finished coroutine; nothing switches back. */
	co_returned_past_trampoline();
}

/* Lay out a new stack so that co_switch() to it starts co_trampoline();
 * returns the stack pointer to store in co->sp. */
static void *first_frame(char *top)
{
	/* EXERCISE first_frame: build the frame co_switch() will unpack.
	 * co_switch() pops, from the stack pointer up: the saved floating-point
	 * control words (one 8-byte slot), r15, r14, r13, r12, rbx, rbp, then
	 * the address it continues at (x86-64; the AArch64 layout is in
	 * switch_aarch64.S). So write, going down from top: the address of
	 * co_returned_past_trampoline (co_trampoline's own return address: it
	 * must never return, and if it does it lands there), the address of
	 * co_trampoline, six zeroed registers, and an 8-byte slot holding the
	 * current MXCSR (low 4 bytes) and x87 control word (next 2 bytes), read
	 * with co_fp_control_now(). Return the address of that last slot.
	 * Hint: top is 16-byte aligned, so after co_switch's final pop the stack
	 * pointer is top - 8, which is what the ABI requires at a function's
	 * first instruction (as if a call had just pushed its return address).
	 * Tests: stack_is_16_byte_aligned_at_entry, runs_coroutines_in_turn_order,
	 * a_new_coroutine_starts_in_its_spawners_rounding_mode.
	 */
	uint64_t *slot = (uint64_t *)(void *)top;
#if defined(__x86_64__)
	*--slot = (uint64_t)(uintptr_t)co_returned_past_trampoline;
	*--slot = (uint64_t)(uintptr_t)co_trampoline;
	for (int i = 0; i < 6; i++)	/* rbp, rbx, r12, r13, r14, r15 */
		*--slot = 0;
	*--slot = co_fp_control_now();
#elif defined(__aarch64__)
	/* switch_aarch64.S: 22 slots, from sp up: x19..x28, x29, x30, d8..d15,
	 * fpcr, padding. x19 carries the trap's address for co_start. */
	slot -= 22;
	memset(slot, 0, 22 * sizeof *slot);
	slot[0] = (uint64_t)(uintptr_t)co_returned_past_trampoline;
	slot[1] = (uint64_t)(uintptr_t)co_trampoline;
	slot[11] = (uint64_t)(uintptr_t)co_start;
	slot[20] = co_fp_control_now();
#else
#error "first_frame() needs the frame layout of this CPU's co_switch"
#endif
	return slot;
	/* STUB: (void)co_trampoline; */
	/* STUB: return top; */
	/* END first_frame */
}

/* A stack of CO_STACK_SIZE bytes with an inaccessible guard page below it:
 * the stack grows down, and running off its end must fault, not overwrite
 * whatever mapping the kernel happened to put there. */
static bool map_stack(struct co *co)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	co->mapping_size = page + CO_STACK_SIZE;
	co->mapping = mmap(NULL, co->mapping_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (co->mapping == MAP_FAILED)
		return false;
	if (mprotect(co->mapping, page, PROT_NONE) < 0) {
		int err = errno;
		munmap(co->mapping, co->mapping_size);
		errno = err;
		return false;
	}
	co->stack = co->mapping + page;
	return true;
}

bool co_spawn(co_fn *fn, void *arg)
{
	struct co *co = calloc(1, sizeof *co);
	if (co == NULL)
		return false;
	if (!map_stack(co)) {
		int err = errno;
		free(co);
		errno = err;
		return false;
	}
	co->fn = fn;
	co->arg = arg;
	co->sp = first_frame(co->stack + CO_STACK_SIZE);
	stack_tools_created(&co->tools, co->stack, CO_STACK_SIZE);
	enqueue(co);
	sched.count++;
	return true;
}

static void co_free(struct co *co)
{
	stack_tools_destroyed(&co->tools);
	/* munmap can only fail for an address range that is not ours. */
	munmap(co->mapping, co->mapping_size);
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
	stack_tools_leave(&co->tools, false, sched.stack_low, sched.stack_size);
	co_switch(&co->sp, &sched.sp);
	stack_tools_arrived(&co->tools, NULL, NULL);
}

void co_run(void)
{
	while (sched.head != NULL) {
		struct co *co = dequeue();
		sched.current = co;
		stack_tools_leave(&sched.tools, false, co->stack, CO_STACK_SIZE);
		co_switch(&sched.sp, &co->sp);
		stack_tools_arrived(&sched.tools, NULL, NULL);
		sched.current = NULL;
		if (co->finished)
			co_free(co);
		else
			enqueue(co);
	}
}
