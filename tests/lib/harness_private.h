/* What the harness's files share among themselves (harness.c: suites,
 * deadlines and failures; servers.c; clients.c). Tests use harness.h. */
#ifndef HARNESS_PRIVATE_H
#define HARNESS_PRIVATE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "harness.h"

enum {
	/* Check passes a failure message from the test process in one packet
	 * of at most 4 KiB (CK_MAX_MSG_SIZE); longer ones are lost. */
	MAX_MESSAGE = 4000,
	MAX_SERVERS = 8,
};

/* A message under construction, cut short (never overflowing) when full. */
struct text {
	char *buf;
	size_t size;
	size_t len;
};
void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void text_add_v(struct text *t, const char *fmt, va_list args);
/* Append s with every line indented by four spaces: all of it (max_lines
 * 0), its last max_lines lines, or its first -max_lines lines. */
void text_add_indented(struct text *t, const char *s, int max_lines);

/* What went wrong, as the failure's reader will want it named. */
enum symptom {
	SYMPTOM_CHECK,     /* a test's own check failed: its hint applies */
	SYMPTOM_NO_REPLY,  /* a wait for the server ran out, nothing came */
	SYMPTOM_STALLED,   /* ...after part of the reply came: its hint applies */
	SYMPTOM_SETUP,     /* the harness itself could not do its part */
};
_Noreturn void harness_fail(enum symptom symptom, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Fail with a likely cause the caller knows better than anyone. */
_Noreturn void harness_fail_because(const char *cause, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clocks and deadlines. */
long long harness_now_ms(void);
int harness_ms_until(long long deadline);
/* Wait until fd has one of events (POLLIN, POLLOUT), through signals, or
 * until deadline: false then. */
bool harness_ready_by(int fd, short events, long long deadline);
/* A wait of ms milliseconds, stretched by TH_TIME_SCALE, and cut to a
 * sixteenth (but no less than 150 ms) once a test of this run has hung: for
 * waits that cannot tell slow from stuck (a connect, an exit). */
int harness_cut_ms(int ms);
/* How long a conversation that may take timeout_ms may go without a byte
 * moving before it is given up: 0 (no limit but its deadline), or, once a
 * test of this run has hung, a sixteenth of it (150 ms at least). */
int harness_stall_ms(int timeout_ms);
/* Record that this chapter's run has seen a hang (see harness.c); once it
 * has, waits are cut short and a hang is described briefly. */
void harness_note_hang(void);
extern bool harness_aftermath;
/* Milliseconds left before the running test's deadline (INT_MAX when no
 * test is running): a wait that must be reported as what it is (a server
 * that does not exit) ends before the test as a whole is declared hung. */
int harness_ms_left(void);

/* The servers the test started (servers.c). */
extern struct th_server harness_servers[MAX_SERVERS];
extern int harness_n_servers;
/* Reap the servers that have ended, describing each (status, stderr) into t
 * (waiting a moment for one to end, if dying says one may be on its way);
 * counts those killed by a signal in *crashed, and returns how many ended. */
int harness_reap_servers(struct text *t, bool dying, int *crashed, int *crash_signal);
/* Describe each running server that may be hung: busy or asleep, where its
 * threads are, its coroutines (the chapter's dump signal). Returns true if
 * any was busy on the CPU. */
bool harness_diagnose_servers(struct text *t);
/* Stop every server (SIGKILL), forget their files. */
void harness_kill_servers(void);
/* Stop every server with th_stop(), as a test case's teardown. */
void harness_stop_servers(void);

#endif
