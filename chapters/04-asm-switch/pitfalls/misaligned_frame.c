/* Chapter 04 pitfall: a first frame 8 bytes off (x86-64 only).
 *
 * The System V ABI (section 3.2.2) wants rsp + 8 to be a multiple of 16 at a
 * function's first instruction: the call that got there pushed 8 bytes onto
 * a 16-byte-aligned stack. Compilers rely on it to keep 16-byte locals
 * aligned, and store them with movaps, which faults on a misaligned address.
 * The classic mistake, made here on purpose: a first frame without the slot
 * for the entry function's own return address, so the coroutine starts with
 * rsp a multiple of 16. Everything works until the first aligned SSE store;
 * here that is printf("%f"): glibc's printf saves the vector registers of its
 * variable arguments with movaps, and a double is such an argument.
 *
 *   misaligned_frame           the broken frame: dies with SIGSEGV in printf
 *   misaligned_frame aligned   the frame as co.c builds it: prints and returns */
#define _GNU_SOURCE

#include <stdio.h>

#if defined(__x86_64__)

#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

enum { STACK_SIZE = 64 * 1024 };

/* The chapter's switch, switch_x86_64.S. */
void co_switch(void **from, void *const *to);
uint64_t co_fp_control_now(void);

static void *main_sp, *coroutine_sp;

static void say(const char *text)
{
	ssize_t ignored = write(STDOUT_FILENO, text, strlen(text));
	(void)ignored;
}

static _Noreturn void coroutine(void)
{
	/* write(2), not stdio, up to the one printf that is the point. */
	say("coroutine: calling printf(\"%f\") with a double argument\n");
	volatile double pi = 3.14159;
	printf("coroutine: pi is about %f\n", pi);
	co_switch(&coroutine_sp, &main_sp);
	abort();	/* main never switches back */
}

/* Before the process dies, say where: a misaligned movaps raises a general
 * protection fault, which Linux reports as SIGSEGV with no fault address.
 * snprintf() and dladdr() are not async-signal-safe in general; here the
 * fault is in printf's first instructions, before it takes any lock. */
static void report_fault(int sig, siginfo_t *info, void *context)
{
	(void)sig;
	greg_t rip = ((ucontext_t *)context)->uc_mcontext.gregs[REG_RIP];
	const unsigned char *ip = (const unsigned char *)(uintptr_t)rip;
	const unsigned char *op = (*ip & 0xf0) == 0x40 ? ip + 1 : ip;	/* skip a REX prefix */
	Dl_info where = { 0 };
	dladdr(ip, &where);
	char line[256];
	int n = snprintf(line, sizeof line,
			 "SIGSEGV at %p in %s, fault address %p, instruction %02x %02x %02x %02x %02x%s\n",
			 (const void *)ip, where.dli_sname ? where.dli_sname : "?", info->si_addr,
			 ip[0], ip[1], ip[2], ip[3], ip[4],
			 op[0] == 0x0f && op[1] == 0x29 ? ": movaps, an aligned 16-byte SSE store" : "");
	ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
	(void)ignored;
	/* SA_RESETHAND put the default action back: returning re-runs the
	 * instruction, which faults again and ends the process with SIGSEGV. */
}

int main(int argc, char **argv)
{
	int aligned = argc > 1 && strcmp(argv[1], "aligned") == 0;
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* The handler runs on a stack of its own, in case ours is the problem. */
	static char handler_stack[64 * 1024];
	stack_t alt = { .ss_sp = handler_stack, .ss_size = sizeof handler_stack };
	struct sigaction act = { .sa_sigaction = report_fault,
				 .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND };
	char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (sigaltstack(&alt, NULL) < 0 || sigaction(SIGSEGV, &act, NULL) < 0 || stack == MAP_FAILED) {
		perror("misaligned_frame: setup");
		return 1;
	}

	/* The frame co_switch() unpacks (see first_frame() in co.c): from the
	 * top down, the entry's return address, the entry, rbp, rbx, r12-r15
	 * and the FP control words. The broken version leaves out the first. */
	uint64_t *slot = (uint64_t *)(void *)(stack + STACK_SIZE);
	if (aligned)
		*--slot = (uint64_t)(uintptr_t)abort;	/* coroutine() never returns */
	*--slot = (uint64_t)(uintptr_t)coroutine;
	for (int i = 0; i < 6; i++)
		*--slot = 0;
	*--slot = co_fp_control_now();
	coroutine_sp = slot;

	/* After co_switch pops everything, rsp is just above the entry slot. */
	uintptr_t entry_rsp = (uintptr_t)(slot + 8);
	printf("main: %s first frame: the coroutine starts with rsp %% 16 == %d (the ABI wants 8)\n",
	       aligned ? "a correct" : "a broken", (int)(entry_rsp % 16));
	co_switch(&main_sp, &coroutine_sp);
	printf("main: the coroutine printed and switched back\n");
	return 0;
}

#else

int main(void)
{
	printf("misaligned_frame: x86-64 only (on AArch64 a misaligned sp faults "
	       "at the first memory access through it, with SIGBUS)\n");
	return 77;
}

#endif
