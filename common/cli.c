/* Command-line handling and error reporting for the echo servers; see cli.h. */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *program = "echo_server";

static void vreport(const char *fmt, va_list args, int err)
{
	/* One fprintf per line, so lines from several threads do not interleave. */
	char message[512], reason[128];
	vsnprintf(message, sizeof message, fmt, args);
	/* strerror_r, not strerror: chapter 02 reports errors from many
	 * threads, and strerror may share one buffer among them. */
	if (err != 0 && strerror_r(err, reason, sizeof reason) != 0)
		snprintf(reason, sizeof reason, "error %d", err);
	if (err != 0)
		fprintf(stderr, "%s: %s: %s\n", program, message, reason);
	else
		fprintf(stderr, "%s: %s\n", program, message);
}

void cli_log(const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vreport(fmt, args, 0);
	va_end(args);
}

void cli_warn(const char *fmt, ...)
{
	int err = errno;
	va_list args;
	va_start(args, fmt);
	vreport(fmt, args, err);
	va_end(args);
	errno = err;
}

void cli_die(const char *fmt, ...)
{
	int err = errno;
	va_list args;
	va_start(args, fmt);
	vreport(fmt, args, err);
	va_end(args);
	exit(EXIT_FAILURE);
}

static _Noreturn void usage(const struct cli_number *extra, size_t n_extra)
{
	fprintf(stderr, "usage: %s [-H HOST] [-p PORT] [-v]", program);
	for (size_t i = 0; i < n_extra; i++)
		fprintf(stderr, " [-%c %s]", extra[i].flag, extra[i].name);
	fprintf(stderr, "\n"
		"  -H HOST  address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)\n"
		"  -p PORT  port to listen on (default 8000; 0 picks a free one)\n"
		"  -v       log connects and disconnects to stderr\n");
	for (size_t i = 0; i < n_extra; i++) {
		if (extra[i].choices != NULL)
			fprintf(stderr, "  -%c %-5s %s (default %s)\n", extra[i].flag,
				extra[i].name, extra[i].help, extra[i].choices[*extra[i].value]);
		else
			fprintf(stderr, "  -%c %-5s %s (default %ld)\n", extra[i].flag,
				extra[i].name, extra[i].help, *extra[i].value);
	}
	exit(2);
}

/* Parse a whole decimal number in [min, max], or return false. */
static bool parse_number(const char *text, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
		return false;
	*out = value;
	return true;
}

/* The index of text among choices (NULL-terminated), or false. */
static bool parse_choice(const char *text, const char *const *choices, long *out)
{
	for (long i = 0; choices[i] != NULL; i++) {
		if (strcmp(text, choices[i]) == 0) {
			*out = i;
			return true;
		}
	}
	return false;
}

static const struct cli_number *find_extra(int flag, const struct cli_number *extra, size_t n_extra)
{
	for (size_t i = 0; i < n_extra; i++)
		if (extra[i].flag == flag)
			return &extra[i];
	return NULL;
}

void cli_parse(int argc, char **argv, const struct cli_number *extra,
	       size_t n_extra, struct cli_options *opts)
{
	if (argc > 0 && argv[0] != NULL) {
		const char *slash = strrchr(argv[0], '/');
		program = slash != NULL ? slash + 1 : argv[0];
	}

	char optstring[64] = "H:p:v";
	for (size_t i = 0; i < n_extra && strlen(optstring) + 3 < sizeof optstring; i++) {
		size_t len = strlen(optstring);
		optstring[len] = extra[i].flag;
		optstring[len + 1] = ':';
		optstring[len + 2] = '\0';
	}

	*opts = (struct cli_options){ .host = "127.0.0.1", .port = "8000" };
	long port;
	int flag;
	opterr = 0;	/* usage() explains every mistake the same way */
	while ((flag = getopt(argc, argv, optstring)) != -1) {
		const struct cli_number *number = find_extra(flag, extra, n_extra);
		if (flag == 'H') {
			opts->host = optarg;
		} else if (flag == 'p') {
			if (!parse_number(optarg, 0, 65535, &port))
				usage(extra, n_extra);
			snprintf(opts->port, sizeof opts->port, "%ld", port);
		} else if (flag == 'v') {
			opts->verbose = true;
		} else if (number != NULL && number->choices != NULL) {
			if (!parse_choice(optarg, number->choices, number->value))
				usage(extra, n_extra);
		} else if (number != NULL) {
			if (!parse_number(optarg, number->min, number->max, number->value))
				usage(extra, n_extra);
		} else {
			usage(extra, n_extra);
		}
	}
	if (optind != argc)
		usage(extra, n_extra);
}
