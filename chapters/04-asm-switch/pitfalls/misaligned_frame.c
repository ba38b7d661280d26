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
 * variable arguments with movaps, and a double is such an argument. The
 * frame is the one first_frame() in the chapter's co.c builds, and the broken
 * one the same, built 8 bytes lower: what leaving out a slot amounts to.
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
#include <ucontext.h>
#include <unistd.h>

/* The chapter's coroutines and its first_frame(), which is static there. */
#include "../co.c"

static void say(const char *text)
{
	ssize_t ignored = write(STDOUT_FILENO, text, strlen(text));
	(void)ignored;
}

static void coroutine(void *arg)
{
	(void)arg;
	/* write(2), not stdio, up to the one printf that is the point. */
	say("coroutine: calling printf(\"%f\") with a double argument\n");
	volatile double pi = 3.14159;
	printf("coroutine: pi is about %f\n", pi);
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
	if (sigaltstack(&alt, NULL) < 0 || sigaction(SIGSEGV, &act, NULL) < 0 ||
	    !co_spawn(coroutine, NULL)) {
		perror("misaligned_frame: setup");
		return 1;
	}

	/* co_spawn() built the first frame below the top of the stack; the
	 * broken one is the same frame built below top - 8, so that every slot,
	 * and the stack pointer co_trampoline starts with, is 8 bytes lower. */
	struct co *co = sched.head;
	if (!aligned)
		co->sp = first_frame(co->stack + CO_STACK_SIZE - 8);
	if (aligned)
		printf("main: the first frame as co.c builds it: the coroutine should start with "
		       "rsp %% 16 == 8, as the ABI wants\n");
	else
		printf("main: a broken first frame, co.c's built 8 bytes lower: the coroutine starts "
		       "with rsp %% 16 == 0 (the ABI wants 8)\n");
	co_run();
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
