/* A trace, for tests of coroutines and threads: each notes what it does, in
 * the order it happens, and the test compares the whole after they ran; see
 * harness.h. */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char trace[1024];

void th_trace_start(void)
{
	trace[0] = '\0';
}

void th_note(const char *fmt, ...)
{
	size_t used = strlen(trace);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(trace + used, sizeof trace - used, fmt, ap);
	va_end(ap);
}

const char *th_trace(void)
{
	return trace;
}

void th_expect_trace(const char *expected, const char *what)
{
	if (strcmp(trace, expected) != 0)
		th_fail("%s: expected the coroutines to note \"%s\", they noted \"%s\"",
			what, expected, trace);
}
