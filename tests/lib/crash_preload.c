/* Preloaded (LD_PRELOAD) into every server a test starts, unless Valgrind or a
 * sanitizer is watching it: a crash prints what killed the server and where,
 * and SIGPWR asks a running server where it is (the harness sends it when a
 * server stops answering). Both go to the server's stderr, which the harness
 * shows in the failure. */
#define _GNU_SOURCE

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "crash_report.h"

static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS };

static void write_who(void)
{
	cr_write(STDERR_FILENO, program_invocation_short_name);
	cr_write(STDERR_FILENO, " (pid ");
	cr_write_number(STDERR_FILENO, (unsigned long)getpid(), 10);
	if (gettid() != getpid()) {
		cr_write(STDERR_FILENO, ", thread ");
		cr_write_number(STDERR_FILENO, (unsigned long)gettid(), 10);
	}
	cr_write(STDERR_FILENO, ")");
}

static void on_crash(int signal, siginfo_t *info, void *ucontext)
{
	cr_write(STDERR_FILENO, "CRASHED: ");
	write_who();
	cr_write(STDERR_FILENO, " was killed by ");
	cr_write_crash(STDERR_FILENO, signal, info, ucontext);
	/* SA_RESETHAND restored the default action; the signal is blocked
	 * until this handler returns, and then it ends the process, whether it
	 * came from the faulting instruction or from kill(). */
	raise(signal);
}

static void on_where(int signal, siginfo_t *info, void *ucontext)
{
	(void)signal;
	(void)info;
	int saved = errno;
	void *frames[CR_MAX_FRAMES];
	size_t n = cr_frames(ucontext, frames, CR_MAX_FRAMES);
	cr_write(STDERR_FILENO, "WHERE: ");
	write_who();
	cr_write(STDERR_FILENO, " was running:\n");
	cr_write_frames(STDERR_FILENO, frames, n);
	errno = saved;
}

__attribute__((constructor)) static void install(void)
{
	cr_prepare();
	cr_alternate_stack();
	struct sigaction crash = { .sa_sigaction = on_crash,
				   .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND };
	for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
		sigaction(crash_signals[i], &crash, NULL);
	/* SA_RESTART: a server asked where it is goes on as if nothing
	 * happened (but for the calls signal(7) lists as never restarted). */
	struct sigaction where = { .sa_sigaction = on_where,
				   .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART };
	sigaction(SIGPWR, &where, NULL);
}
