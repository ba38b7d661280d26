/* A machine without io_uring, for chapter 09's tests: runs the server under
 * test (TH_SERVER) with the arguments given, after installing a seccomp
 * filter that fails io_uring_setup with EPERM, as the default seccomp
 * profiles of Docker and other container runtimes do. The filter survives
 * the exec, and nothing else is forbidden.
 *
 *   without_io_uring [ARG...]     exec $TH_SERVER ARG... */
#define _GNU_SOURCE

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "without_io_uring needs this CPU's AUDIT_ARCH_ value"
#endif

static int forbid_io_uring_setup(void)
{
	struct sock_filter program[] = {
		/* A system call of another architecture (x32, say): allow. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		/* io_uring_setup: EPERM; anything else: allow. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog filter = {
		.len = sizeof program / sizeof program[0],
		.filter = program,
	};
	/* Without root, a filter needs no_new_privs (seccomp(2)). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter);
}

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
