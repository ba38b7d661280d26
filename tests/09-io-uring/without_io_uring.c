/* A machine without io_uring, for chapter 09's tests: runs the server under
 * test (TH_SERVER) with the arguments given, after installing a seccomp
 * filter that fails io_uring_setup with EPERM, as the default seccomp
 * profiles of Docker and other container runtimes do. The filter survives
 * the exec, and nothing else is forbidden (forbid_io_uring.c).
 *
 *   without_io_uring [ARG...]     exec $TH_SERVER ARG... */
#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forbid_io_uring.h"

int main(int argc, char **argv)
{
	(void)argc;
	const char *server = getenv("TH_SERVER");
	if (server == NULL) {
		fprintf(stderr, "without_io_uring: TH_SERVER names no server to run\n");
		return 127;
	}
	if (forbid_io_uring_setup() < 0) {
		fprintf(stderr, "without_io_uring: seccomp filter: %s\n", strerror(errno));
		return 127;
	}
	argv[0] = (char *)server;
	execv(server, argv);
	fprintf(stderr, "without_io_uring: %s: %s\n", server, strerror(errno));
	return 127;
}
