/* What each chapter's server promises, declared once for the suites shared
 * by several chapters (tests/all-chapters, tests/coroutines), and which of
 * the chapter's TODOs those suites check. A chapter not listed serves clients concurrently,
 * sleeps while idle, and has no TODO those suites check. */
#ifndef PROMISES_H
#define PROMISES_H

#include <stdbool.h>

struct th_promise {
	const char *chapter;
	bool serial;             /* serves one client at a time */
	bool spins_when_idle;    /* busy-waits instead of sleeping in the kernel */
	bool drains_on_stop;     /* SIGTERM gives connected clients a grace period */
	const char *echo_todos;  /* TODOs whose absence breaks the echo itself */
	const char *retry_todos; /* TODOs whose absence breaks short or interrupted I/O */
	const char *coroutine_todos; /* TODOs tests/coroutines checks */
	const char *idle_todos;  /* TODOs that make an idle server sleep */
	const char *hub_todos;   /* TODOs of the hub itself (tests/hub) */
	int dump_signal;         /* makes the server print its coroutines, or 0 */
};

/* The promise of the chapter under test (TH_CHAPTER). */
const struct th_promise *th_promise(void);

#endif
