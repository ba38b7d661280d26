/* Command-line handling and error reporting shared by every chapter's echo
 * server: the contract of COURSE.md (-H HOST, -p PORT, -v), usage errors
 * (exit 2) and runtime failures (exit 1). No chapter teaches this file. */
#ifndef CLI_H
#define CLI_H

#include <stdbool.h>
#include <stddef.h>

/* A chapter's own flag with a value: a number, such as chapter 02's
 * "-m MAX", or one of a few words, such as chapter 09's "-b HUB" (then
 * choices lists them, NULL-terminated, and the value is the index of the
 * word given; min and max are not used). */
struct cli_number {
	char flag;              /* the option letter */
	const char *name;       /* its argument in the usage line: "MAX" */
	const char *help;       /* one line for the usage text */
	long min, max;          /* accepted range, inclusive */
	long *value;            /* holds the default on entry, the value on return */
	const char *const *choices; /* the words accepted, or NULL for a number */
};

struct cli_options {
	const char *host;       /* -H: the address to listen on */
	char port[8];           /* -p: 0..65535 as text, ready for getaddrinfo() */
	bool verbose;           /* -v: log connects and disconnects */
};

/* Parse argv; on a usage error print the usage line and exit 2. */
void cli_parse(int argc, char **argv, const struct cli_number *extra,
	       size_t n_extra, struct cli_options *opts);

/* "echo_server: <message>" on stderr. */
void cli_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "echo_server: <message>: <strerror(errno)>" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_warn(), then exit 1. */
_Noreturn void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
