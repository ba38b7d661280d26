/* Where a program was when it crashed or hung: the frames of the code a signal
 * interrupted, written as "function at file:line" by addr2line. Everything
 * here may be called from a signal handler (it uses async-signal-safe calls,
 * and the unwinder, which glibc's own crash reports use too). The harness
 * uses it in the test process, and crash_preload.c in every server a test
 * starts. */
#ifndef CRASH_REPORT_H
#define CRASH_REPORT_H

#include <signal.h>
#include <stddef.h>

enum { CR_MAX_FRAMES = 24 };

/* Call once before any signal can arrive: the first unwind loads libgcc_s,
 * which must not happen inside a handler. */
void cr_prepare(void);

/* Give this thread a stack for signal handlers of its own, so that a stack
 * overflow can still be reported. */
void cr_alternate_stack(void);

/* From inside a handler installed with SA_SIGINFO: the frames of the code the
 * signal interrupted, the interrupted instruction first, then return
 * addresses. Returns how many were stored in frames. */
size_t cr_frames(const void *ucontext, void **frames, size_t max);

/* Write frames to fd, a line each: "    #N function at file:line". The first
 * is the interrupted instruction; the others are return addresses, shown at
 * the call. Needs addr2line (binutils, which gcc brings); without it, each
 * line is "module+0xOFFSET". */
void cr_write_frames(int fd, void *const *frames, size_t n);

/* What a crash handler knows: the signal's name, the address of a bad
 * access, then the frames of the code it interrupted. Writes, to fd,
 * "SIGSEGV at address 0x10, in:" and a line a frame. */
void cr_write_crash(int fd, int signal, const siginfo_t *info, const void *ucontext);

/* "SIGSEGV", "SIGABRT"... or "signal N" for one without a name here. */
const char *cr_signal_name(int signal);

/* What a crash with this signal most often means, in a sentence. */
const char *cr_signal_cause(int signal);

/* Async-signal-safe output: a string; an unsigned number in base 10 or 16. */
void cr_write(int fd, const char *text);
void cr_write_number(int fd, unsigned long value, int base);

#endif
