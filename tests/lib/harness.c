/* The course's test harness; see harness.h. */
#define _GNU_SOURCE

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	DEFAULT_TIMEOUT_MS = 5000,
	START_TIMEOUT_MS = 10000,   /* Valgrind takes a while to start a program */
	STOP_TIMEOUT_MS = 5000,
	RUN_SERVER_TIMEOUT_MS = 10000, /* for a command line that must end it */
	MAX_SERVERS = 8,
	STDERR_TAIL = 2048,
	/* Check passes a failure message from the test process in one packet of
	 * at most 4 KiB (CK_MAX_MSG_SIZE); longer ones are lost. */
	MAX_MESSAGE = 4000,
	MAX_ARGS = 64,
};

static const char *about_todos = "";
static const char *about_cause = "";
static struct th_server servers[MAX_SERVERS];
static int n_servers;

/* ---- Time ---------------------------------------------------------------- */

int th_ms(int ms)
{
	const char *scale = getenv("TH_TIME_SCALE");
	int factor = scale != NULL ? atoi(scale) : 1;
	return ms * (factor > 0 ? factor : 1);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, for poll(); never negative. */
static int ms_until(long long deadline)
{
	long long left = deadline - now_ms();
	return left > 0 ? (int)left : 0;
}

void th_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		continue;
}

/* ---- Failing with a message that teaches --------------------------------- */

void th_about(const char *todos, const char *likely_cause)
{
	about_todos = todos != NULL ? todos : "";
	about_cause = likely_cause != NULL ? likely_cause : "";
}

/* Describe how a child process ended, from its wait status. */
static void describe_status(int status, char *text, size_t size)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 99)
		snprintf(text, size, "exited with status 99: Valgrind or a sanitizer found errors (see its stderr)");
	else if (WIFEXITED(status))
		snprintf(text, size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(text, size, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(text, size, "ended with wait status %#x", (unsigned)status);
}

/* Append to a message: has a server died under us, and what did it say? */
static void describe_dead_servers(char *msg, size_t size)
{
	for (int i = 0; i < n_servers; i++) {
		struct th_server *s = &servers[i];
		int status;
		if (s->pid <= 0 || waitpid(s->pid, &status, WNOHANG) != s->pid)
			continue;
		s->pid = 0;
		char how[128];
		describe_status(status, how, sizeof how);
		const char *err = th_server_stderr(s);
		size_t used = strlen(msg);
		if (err[0] == '\0')
			snprintf(msg + used, size - used, "\n  The server %s while the test still "
				 "needed it, printing nothing on stderr.", how);
		else
			snprintf(msg + used, size - used, "\n  The server %s while the test still "
				 "needed it. Its stderr ended with:\n%s", how, err);
	}
}

void th_fail(const char *fmt, ...)
{
	static char msg[MAX_MESSAGE];
	va_list args;
	va_start(args, fmt);
	vsnprintf(msg, sizeof msg, fmt, args);
	va_end(args);

	describe_dead_servers(msg, sizeof msg);
	size_t used = strlen(msg);
	const char *lesson = getenv("TH_LESSON");
	if (about_todos[0] != '\0')
		used += (size_t)snprintf(msg + used, sizeof msg - used,
					 "\n  This test checks TODO %s (%s, \"Your turn\").",
					 about_todos, lesson != NULL ? lesson : "the chapter's README.md");
	if (about_cause[0] != '\0' && used < sizeof msg)
		snprintf(msg + used, sizeof msg - used, "\n  Likely cause: %s.", about_cause);
	ck_abort_msg("%s", msg);
	abort();	/* not reached: ck_abort_msg() does not return */
}

/* ---- Suites -------------------------------------------------------------- */

/* Forget the servers: their stderr files and pipes. */
static void release_servers(void)
{
	for (int i = 0; i < n_servers; i++) {
		if (servers[i].stdout_fd >= 0)
			close(servers[i].stdout_fd);
		unlink(servers[i].stderr_path);
	}
	n_servers = 0;
}

static void stop_all_servers(void)
{
	th_about("", "");	/* how a server ends is not about the test's TODO */
	for (int i = 0; i < n_servers; i++)
		if (servers[i].pid > 0)
			th_stop(&servers[i]);
	release_servers();
}

/* After a failed test in CK_FORK=no mode, no check: just do not leave
 * servers behind. */
static void kill_all_servers(void)
{
	for (int i = 0; i < n_servers; i++) {
		if (servers[i].pid > 0) {
			kill(servers[i].pid, SIGKILL);
			waitpid(servers[i].pid, NULL, 0);
			servers[i].pid = 0;
		}
	}
	release_servers();
}

static void setup(void)
{
	kill_all_servers();
	th_about("", "");
}

/* Every test of the suite with its test case, for TH_LIST_TESTS. */
enum { MAX_TESTS = 256 };
static struct listed_test {
	const char *test;
	const char *tcase;
	const char *todos;
} listed[MAX_TESTS];
static int n_listed;
static struct listed_tcase {
	TCase *tc;
	const char *name;
	const char *todos;
} tcases[MAX_TESTS];
static int n_tcases;

static void list_test(TCase *tc, const TTest *test)
{
	for (int i = 0; i < n_tcases; i++) {
		if (tcases[i].tc != tc)
			continue;
		if (n_listed == MAX_TESTS) {
			fprintf(stderr, "harness: more than %d tests in one suite\n", MAX_TESTS);
			exit(EXIT_FAILURE);
		}
		listed[n_listed++] = (struct listed_test){ test->name, tcases[i].name, tcases[i].todos };
		return;
	}
	fprintf(stderr, "harness: test %s added to a test case not made by th_tcase()\n", test->name);
	exit(EXIT_FAILURE);
}

void th_test(TCase *tc, const TTest *test)
{
	list_test(tc, test);
	tcase_add_test(tc, test);
}

void th_test_raise_signal(TCase *tc, const TTest *test, int signal)
{
	list_test(tc, test);
	tcase_add_test_raise_signal(tc, test, signal);
}

TCase *th_tcase(Suite *suite, const char *name, const char *todos)
{
	TCase *tc = tcase_create(name);
	if (n_tcases == MAX_TESTS) {
		fprintf(stderr, "harness: more than %d test cases in one suite\n", MAX_TESTS);
		exit(EXIT_FAILURE);
	}
	tcases[n_tcases++] = (struct listed_tcase){ tc, name, todos != NULL ? todos : "" };
	if (todos != NULL && todos[0] != '\0')
		tcase_set_tags(tc, todos);
	/* A hung test fails after this long; CK_TIMEOUT_MULTIPLIER stretches it
	 * under Valgrind. Each wait inside a test has a shorter deadline of its own. */
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, stop_all_servers);
	suite_add_tcase(suite, tc);
	return tc;
}

/* Check writes one log per run of a test binary, and a chapter has several
 * binaries: a %s in CK_LOG_FILE_NAME, CK_TAP_LOG_FILE_NAME or
 * CK_XML_LOG_FILE_NAME becomes the binary's name, one file each. */
static void log_per_binary(SRunner *runner, const char *variable,
			   void (*set)(SRunner *, const char *), char *name, size_t size)
{
	const char *pattern = getenv(variable);
	const char *at = pattern != NULL ? strstr(pattern, "%s") : NULL;
	if (at == NULL)
		return;
	snprintf(name, size, "%.*s%s%s", (int)(at - pattern), pattern,
		 program_invocation_short_name, at + 2);
	set(runner, name);
}

int th_run(Suite *suite)
{
	static char log[256], tap[256], xml[256];
	if (getenv("TH_LIST_TESTS") != NULL) {
		for (int i = 0; i < n_listed; i++)
			printf("%s\t%s\t%s\n", listed[i].test, listed[i].tcase, listed[i].todos);
		srunner_free(srunner_create(suite));	/* frees the suite */
		return EXIT_SUCCESS;
	}
	atexit(kill_all_servers);
	SRunner *runner = srunner_create(suite);
	log_per_binary(runner, "CK_LOG_FILE_NAME", srunner_set_log, log, sizeof log);
	log_per_binary(runner, "CK_TAP_LOG_FILE_NAME", srunner_set_tap, tap, sizeof tap);
	log_per_binary(runner, "CK_XML_LOG_FILE_NAME", srunner_set_xml, xml, sizeof xml);
	srunner_run_all(runner, CK_ENV);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- Servers ------------------------------------------------------------- */

static const char *required_env(const char *name)
{
	const char *value = getenv(name);
	if (value == NULL || value[0] == '\0')
		th_fail("%s is not set: run the tests with make check, which sets it", name);
	return value;
}

/* Run in the child between fork() and exec(): only async-signal-safe calls. */
static _Noreturn void exec_server(char **argv, int stdout_fd, int stderr_fd, const char *preload)
{
	/* If the test process dies, take the server with it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (dup2(stdout_fd, STDOUT_FILENO) < 0 || dup2(stderr_fd, STDERR_FILENO) < 0)
		_exit(127);
	/* Check's own pipes and files have no close-on-exec flag; a server must
	 * start with just 0, 1 and 2, or the fd-limit tests would count them. */
	close_range(3, ~0U, 0);
	if (preload != NULL)
		setenv("LD_PRELOAD", preload, 1);
	execvp(argv[0], argv);
	_exit(127);
}

/* Split TH_WRAPPER on spaces into argv, followed by the server, -p 0 when
 * any_port, and args (NULL-terminated, or NULL). */
static int build_argv(char **argv, const char *server, bool any_port, const char *const *args)
{
	static char wrapper[1024];
	const char *wrapper_env = getenv("TH_WRAPPER");
	snprintf(wrapper, sizeof wrapper, "%s", wrapper_env != NULL ? wrapper_env : "");
	int argc = 0;
	for (char *word = strtok(wrapper, " "); word != NULL && argc < MAX_ARGS - 8;
	     word = strtok(NULL, " "))
		argv[argc++] = word;
	argv[argc++] = (char *)server;
	if (any_port) {
		argv[argc++] = "-p";
		argv[argc++] = "0";
	}
	for (int i = 0; args != NULL && args[i] != NULL; i++) {
		if (argc == MAX_ARGS - 1)
			th_fail("too many server arguments");
		argv[argc++] = (char *)args[i];
	}
	argv[argc] = NULL;
	return argc;
}

/* Read the first line the server prints, "listening on HOST:PORT". */
static void read_listening_line(struct th_server *s)
{
	char line[256];
	size_t len = 0;
	long long deadline = now_ms() + th_ms(START_TIMEOUT_MS);
	while (len == 0 || line[len - 1] != '\n') {
		struct pollfd pfd = { .fd = s->stdout_fd, .events = POLLIN };
		int ready = poll(&pfd, 1, ms_until(deadline));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0)
			th_fail("the server printed no \"listening on HOST:PORT\" line within %d ms",
				th_ms(START_TIMEOUT_MS));
		ssize_t got = read(s->stdout_fd, line + len, 1);
		if (got <= 0)
			th_fail("the server closed its stdout before printing \"listening on HOST:PORT\"");
		if (++len == sizeof line)
			th_fail("the server's first line is too long");
	}
	line[len - 1] = '\0';

	const char *prefix = "listening on ";
	char *colon = strrchr(line, ':');
	if (strncmp(line, prefix, strlen(prefix)) != 0 || colon == NULL)
		th_fail("the server's first line is \"%s\", expected \"listening on HOST:PORT\"", line);
	*colon = '\0';
	char *host = line + strlen(prefix);
	if (host[0] == '[') {	/* an IPv6 address: [::1]:8000 */
		host++;
		host[strlen(host) - 1] = '\0';
	}
	if (strlen(host) >= sizeof s->host || strlen(colon + 1) >= sizeof s->port)
		th_fail("the server's first line has an address too long to be real: %s", host);
	strcpy(s->host, host);
	strcpy(s->port, colon + 1);
}

/* The LD_PRELOAD list a launch asks for: its own library first, so that its
 * dlsym(RTLD_NEXT) finds the shim's definitions, and the shim's the real
 * ones. NULL for none. */
static const char *preload_list(const struct th_launch *launch)
{
	static char list[1024];
	const char *shim = launch->short_io ? required_env("TH_SHORT_IO") : NULL;
	if (launch->preload == NULL)
		return shim;
	snprintf(list, sizeof list, "%s%s%s", launch->preload, shim != NULL ? ":" : "",
		 shim != NULL ? shim : "");
	return list;
}

const char *th_build_path(const char *name)
{
	enum { PATHS = 8 };
	static char paths[PATHS][512];
	static int next;
	const char *server = required_env("TH_SERVER");
	const char *slash = strrchr(server, '/');
	char *path = paths[next++ % PATHS];
	snprintf(path, sizeof paths[0], "%.*s%s", slash != NULL ? (int)(slash - server + 1) : 0,
		 server, name);
	if (access(path, F_OK) < 0)
		th_fail("%s: %s (does the build make it?)", path, strerror(errno));
	return path;
}

struct th_server *th_start(const struct th_launch *launch)
{
	static const struct th_launch defaults;
	if (launch == NULL)
		launch = &defaults;
	if (n_servers == MAX_SERVERS)
		th_fail("a test may start at most %d servers", MAX_SERVERS);

	const char *server = launch->server != NULL ? launch->server : required_env("TH_SERVER");
	const char *preload = preload_list(launch);
	char *argv[MAX_ARGS];
	build_argv(argv, server, true, launch->args);

	struct th_server *s = &servers[n_servers];
	*s = (struct th_server){ .stdout_fd = -1 };
	const char *tmp = getenv("TMPDIR");
	snprintf(s->stderr_path, sizeof s->stderr_path, "%s/th-stderr-XXXXXX",
		 tmp != NULL ? tmp : "/tmp");
	int stderr_fd = mkstemp(s->stderr_path);
	if (stderr_fd < 0)
		th_fail("mkstemp %s: %s", s->stderr_path, strerror(errno));
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		th_fail("pipe: %s", strerror(errno));

	fflush(NULL);	/* or the child would flush our buffered output again */
	pid_t pid = fork();
	if (pid < 0)
		th_fail("fork: %s", strerror(errno));
	if (pid == 0)
		exec_server(argv, out[1], stderr_fd, preload);

	close(out[1]);
	close(stderr_fd);
	s->pid = pid;
	s->stdout_fd = out[0];
	n_servers++;
	read_listening_line(s);

	/* Lower the descriptor limit only now that the server is up: a wrapper
	 * such as Valgrind needs descriptors of its own to start. */
	struct rlimit limit;
	if (launch->fd_limit > 0) {
		if (prlimit(pid, RLIMIT_NOFILE, NULL, &limit) < 0)
			th_fail("prlimit: %s", strerror(errno));
		limit.rlim_cur = (rlim_t)launch->fd_limit;
		if (prlimit(pid, RLIMIT_NOFILE, &limit, NULL) < 0)
			th_fail("prlimit: %s", strerror(errno));
	}

	if (launch->short_io) {
		char banner[160];
		const char *slash = strrchr(server, '/');
		snprintf(banner, sizeof banner, "short_io: loaded into %s:", slash != NULL ? slash + 1 : server);
		if (strstr(th_server_stderr(s), banner) == NULL)
			th_fail("the short-I/O shim (LD_PRELOAD=%s) did not load into the server", preload);
	}
	return s;
}

/* Read what fd says until it closes or the deadline passes; false at the
 * deadline. */
static bool read_until_eof(int fd, char *out, size_t size, long long deadline)
{
	size_t len = 0;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int ready = poll(&pfd, 1, ms_until(deadline));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0)
			th_fail("poll: %s", strerror(errno));
		if (ready == 0)
			break;
		char sink[256];
		bool room = len < size - 1;
		ssize_t got = read(fd, room ? out + len : sink, room ? size - 1 - len : sizeof sink);
		if (got == 0) {
			out[len] = '\0';
			return true;
		}
		if (got < 0 && errno != EINTR)
			th_fail("read a program's output: %s", strerror(errno));
		if (got > 0 && room)
			len += (size_t)got;
	}
	out[len] = '\0';
	return false;
}

int th_run_program(const struct th_launch *launch, int timeout_ms, char *out, size_t out_size)
{
	const char *program = launch->server != NULL ? launch->server : required_env("TH_SERVER");
	const char *preload = preload_list(launch);
	char *argv[MAX_ARGS];
	build_argv(argv, program, false, launch->args);
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		th_fail("pipe: %s", strerror(errno));
	fflush(NULL);	/* or the child would flush our buffered output again */
	pid_t pid = fork();
	if (pid < 0)
		th_fail("fork: %s", strerror(errno));
	if (pid == 0)
		exec_server(argv, pipefd[1], pipefd[1], preload);

	close(pipefd[1]);
	bool ended = read_until_eof(pipefd[0], out, out_size, now_ms() + th_ms(timeout_ms));
	close(pipefd[0]);
	if (!ended)
		kill(pid, SIGKILL);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			th_fail("waitpid: %s", strerror(errno));
	if (!ended)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int th_run_server(const char *const *args, char *err, size_t err_size)
{
	struct th_launch launch = { .args = args };
	int status = th_run_program(&launch, RUN_SERVER_TIMEOUT_MS, err, err_size);
	if (status < 0)
		th_fail("the server, run with a command line it should reject or fail on, was "
			"still running after %d ms; its output:\n%s", th_ms(RUN_SERVER_TIMEOUT_MS), err);
	return status;
}

void th_stop(struct th_server *s)
{
	if (s->pid <= 0)
		return;
	pid_t pid = s->pid;
	s->pid = 0;
	if (kill(pid, SIGTERM) < 0)
		th_fail("kill %d: %s", (int)pid, strerror(errno));

	int status;
	long long deadline = now_ms() + th_ms(STOP_TIMEOUT_MS);
	pid_t done;
	while ((done = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		th_sleep_ms(10);
	if (done == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		th_fail("the server did not exit within %d ms of SIGTERM; its stderr ended with:\n%s",
			th_ms(STOP_TIMEOUT_MS), th_server_stderr(s));
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char how[128];
		describe_status(status, how, sizeof how);
		th_fail("on SIGTERM the server should exit with status 0, but it %s. "
			"Its stderr ended with:\n%s", how, th_server_stderr(s));
	}
}

/* Read /proc/PID/name into buf; false if the process is gone. */
static bool read_proc(pid_t pid, const char *name, char *buf, size_t size)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t got = read(fd, buf, size - 1);
	close(fd);
	buf[got > 0 ? got : 0] = '\0';
	return got > 0;
}

long th_server_cpu_ms(const struct th_server *s)
{
	char stat[1024];
	if (!read_proc(s->pid, "stat", stat, sizeof stat))
		th_fail("cannot read /proc/%d/stat: has the server exited?", (int)s->pid);
	/* proc(5): fields 14 and 15, utime and stime in clock ticks; the command
	 * name (field 2) is in parentheses and may hold spaces, so count from
	 * the last ')'. */
	const char *p = strrchr(stat, ')');
	unsigned long utime, stime;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
				&utime, &stime) != 2)
		th_fail("cannot parse /proc/%d/stat", (int)s->pid);
	return (long)((utime + stime) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

long th_server_rss_kib(const struct th_server *s)
{
	char status[4096];
	if (!read_proc(s->pid, "status", status, sizeof status))
		th_fail("cannot read /proc/%d/status: has the server exited?", (int)s->pid);
	const char *line = strstr(status, "\nVmRSS:");
	long kib;
	if (line == NULL || sscanf(line, "\nVmRSS: %ld", &kib) != 1)
		th_fail("no VmRSS in /proc/%d/status", (int)s->pid);
	return kib;
}

const char *th_server_stderr(const struct th_server *s)
{
	static char tail[STDERR_TAIL + 1];
	tail[0] = '\0';
	int fd = open(s->stderr_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tail;
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > STDERR_TAIL ? size - STDERR_TAIL : 0;
	ssize_t got = pread(fd, tail, STDERR_TAIL, from);
	tail[got > 0 ? got : 0] = '\0';
	close(fd);
	return tail;
}

/* ---- Clients ------------------------------------------------------------- */

int th_connect(const struct th_server *s)
{
	return th_connect_small_window(s, 0);
}

int th_connect_small_window(const struct th_server *s, int rcvbuf)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
	};
	struct addrinfo *addr;
	int err = getaddrinfo(s->host, s->port, &hints, &addr);
	if (err != 0)
		th_fail("getaddrinfo %s:%s: %s", s->host, s->port, gai_strerror(err));
	int fd = socket(addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		th_fail("socket: %s", strerror(errno));
	/* Before connect(), or the window is already agreed (socket(7)). */
	if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0)
		th_fail("setsockopt SO_RCVBUF: %s", strerror(errno));
	int rc = connect(fd, addr->ai_addr, addr->ai_addrlen);
	freeaddrinfo(addr);
	if (rc < 0 && errno != EINPROGRESS)
		th_fail("connect to %s:%s: %s", s->host, s->port, strerror(errno));

	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int timeout = th_ms(DEFAULT_TIMEOUT_MS);
	if (poll(&pfd, 1, timeout) <= 0)
		th_fail("connect to %s:%s did not complete within %d ms", s->host, s->port, timeout);
	socklen_t len = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
		th_fail("connect to %s:%s: %s (is the server still running?)", s->host, s->port,
			strerror(err));
	return fd;
}

void th_close(int fd)
{
	if (close(fd) < 0)
		th_fail("close: %s", strerror(errno));
}

void th_reset(int fd)
{
	/* A zero linger time makes close() drop unsent data and send an RST. */
	struct linger abort_now = { .l_onoff = 1, .l_linger = 0 };
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now) < 0)
		th_fail("setsockopt SO_LINGER: %s", strerror(errno));
	th_close(fd);
}

static void receive_some(int fd, struct th_reply *r, size_t *cap)
{
	if (*cap - r->len < 65536) {
		*cap = *cap * 2 + 65536;
		r->data = realloc(r->data, *cap);
		if (r->data == NULL)
			th_fail("out of memory");
	}
	ssize_t got = recv(fd, r->data + r->len, *cap - r->len, 0);
	if (got > 0)
		r->len += (size_t)got;
	else if (got == 0)
		r->eof = true;
	else if (errno == ECONNRESET)
		r->eof = r->reset = true;
	else if (errno != EAGAIN && errno != EINTR)
		th_fail("recv: %s", strerror(errno));
}

/* One connection's part in th_exchange_many(). */
struct flow {
	int fd;
	const struct th_exchange *ex;
	struct th_reply *reply;
	size_t cap;              /* of reply->data */
	bool shut;               /* SHUT_WR done */
	bool done;
	long long deadline;
	long long next_send;     /* with ex->pause_ms: not before this time */
};

static void send_some(struct flow *f)
{
	const struct th_exchange *ex = f->ex;
	struct th_reply *r = f->reply;
	size_t n = ex->send_len - r->sent;
	if (ex->chunk > 0 && n > ex->chunk)
		n = ex->chunk;
	ssize_t put = send(f->fd, (const char *)ex->send + r->sent, n, MSG_NOSIGNAL);
	if (put >= 0) {
		r->sent += (size_t)put;
		f->next_send = now_ms() + ex->pause_ms;
	} else if (errno == EPIPE || errno == ECONNRESET) {
		r->eof = r->reset = true;
	} else if (errno != EAGAIN && errno != EINTR) {
		th_fail("send: %s", strerror(errno));
	}
}

/* Is this flow finished? Half-closes it once everything is sent. */
static bool flow_finished(struct flow *f)
{
	const struct th_exchange *ex = f->ex;
	struct th_reply *r = f->reply;
	bool all_sent = r->sent == ex->send_len;
	if (all_sent && ex->shut_wr && !f->shut) {
		if (shutdown(f->fd, SHUT_WR) < 0)
			th_fail("shutdown(SHUT_WR): %s", strerror(errno));
		f->shut = true;
	}
	bool have_all = ex->until_eof ? r->eof : r->len >= ex->want;
	if ((all_sent && have_all) || r->eof)
		return true;
	if (now_ms() >= f->deadline) {
		r->timed_out = true;
		return true;
	}
	return false;
}

/* Wait for the next event on the flows not yet done; false once all are. */
static bool pump(struct flow *flows, struct pollfd *pfds, size_t n)
{
	long long wake = -1;
	size_t active = 0;
	for (size_t i = 0; i < n; i++) {
		struct flow *f = &flows[i];
		pfds[i] = (struct pollfd){ .fd = -1 };	/* poll() skips negative fds */
		if (!f->done)
			f->done = flow_finished(f);
		if (f->done)
			continue;
		active++;
		bool unsent = f->reply->sent < f->ex->send_len;
		bool may_send = unsent && now_ms() >= f->next_send;
		pfds[i] = (struct pollfd){ .fd = f->fd, .events = POLLIN | (may_send ? POLLOUT : 0) };
		long long next = unsent && !may_send && f->next_send < f->deadline ? f->next_send : f->deadline;
		if (wake < 0 || next < wake)
			wake = next;
	}
	if (active == 0)
		return false;
	int ready = poll(pfds, n, ms_until(wake));
	if (ready < 0 && errno != EINTR)
		th_fail("poll: %s", strerror(errno));
	for (size_t i = 0; ready > 0 && i < n; i++) {
		if (pfds[i].fd < 0)
			continue;
		if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR))
			receive_some(flows[i].fd, flows[i].reply, &flows[i].cap);
		if (!flows[i].reply->eof && (pfds[i].revents & POLLOUT))
			send_some(&flows[i]);
	}
	return true;
}

void th_exchange_many(const int *fds, const struct th_exchange *ex, struct th_reply *replies, size_t n)
{
	struct flow *flows = calloc(n, sizeof *flows);
	struct pollfd *pfds = calloc(n, sizeof *pfds);
	if (flows == NULL || pfds == NULL)
		th_fail("out of memory");
	long long start = now_ms();
	for (size_t i = 0; i < n; i++) {
		replies[i] = (struct th_reply){ 0 };
		int timeout = th_ms(ex[i].timeout_ms > 0 ? ex[i].timeout_ms : DEFAULT_TIMEOUT_MS);
		flows[i] = (struct flow){ .fd = fds[i], .ex = &ex[i], .reply = &replies[i],
					  .deadline = start + timeout, .next_send = start };
	}
	while (pump(flows, pfds, n))
		continue;
	free(flows);
	free(pfds);
}

void th_exchange(int fd, const struct th_exchange *ex, struct th_reply *reply)
{
	th_exchange_many(&fd, ex, reply, 1);
}

size_t th_send_without_reading(int fd, size_t max)
{
	unsigned char *data = th_payload(max, 7);
	size_t sent = 0;
	while (sent < max) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int ready = poll(&pfd, 1, 200);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0)
			th_fail("poll: %s", strerror(errno));
		if (ready == 0)
			break;
		ssize_t put = send(fd, data + sent, max - sent, MSG_NOSIGNAL);
		if (put < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (put < 0)
			th_fail("send: %s", strerror(errno));
		sent += (size_t)put;
	}
	free(data);
	return sent;
}

void th_reply_free(struct th_reply *r)
{
	free(r->data);
	r->data = NULL;
}

void th_expect_echo(int fd, const void *msg, size_t len)
{
	struct th_exchange ex = { .send = msg, .send_len = len, .want = len };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	th_check_echo(msg, len, &reply);
	th_reply_free(&reply);
}

/* Up to 16 bytes from offset as hex and as text, for failure messages. */
static const char *show_bytes(const unsigned char *data, size_t len, size_t offset, char *text, size_t size)
{
	if (offset >= len) {
		snprintf(text, size, "(nothing)");
		return text;
	}
	size_t n = len - offset < 16 ? len - offset : 16;
	size_t used = 0;
	for (size_t i = 0; i < n && used < size; i++)
		used += (size_t)snprintf(text + used, size - used, "%02x ", data[offset + i]);
	if (used < size)
		used += (size_t)snprintf(text + used, size - used, "%*s|", (int)(16 - n) * 3, "");
	for (size_t i = 0; i < n && used + 1 < size; i++) {
		unsigned char c = data[offset + i];
		text[used++] = (c >= 0x20 && c < 0x7f) ? (char)c : '.';
	}
	snprintf(text + used, size - used, "|%s", offset + n < len ? " ..." : "");
	return text;
}

static const char *how_it_ended(const struct th_reply *r)
{
	if (r->reset)
		return "the server reset the connection";
	if (r->eof)
		return "the server closed the connection";
	if (r->timed_out)
		return "then nothing more came before the deadline";
	return "the reply is complete";
}

void th_check_echo(const void *sent, size_t sent_len, const struct th_reply *r)
{
	unsigned char *expected = malloc(sent_len + 1);
	if (expected == NULL)
		th_fail("out of memory");
	th_uppercase(sent, expected, sent_len);

	size_t common = r->len < sent_len ? r->len : sent_len;
	size_t at = 0;
	while (at < common && r->data[at] == expected[at])
		at++;
	if (at == sent_len && r->len == sent_len) {
		free(expected);
		return;
	}

	char s[128], e[128], g[128];
	show_bytes(sent, sent_len, at, s, sizeof s);
	show_bytes(expected, sent_len, at, e, sizeof e);
	show_bytes(r->data, r->len, at, g, sizeof g);
	free(expected);
	th_fail("sent %zu bytes (%zu of them delivered) and expected them back uppercased, "
		"but got %zu bytes (%s).\n"
		"  First difference at byte %zu:\n"
		"    sent:     %s\n"
		"    expected: %s\n"
		"    got:      %s",
		sent_len, r->sent, r->len, how_it_ended(r), at, s, e, g);
}

void th_expect_silence(int fd, int ms, const char *why)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	long long deadline = now_ms() + ms;
	int ready;
	while ((ready = poll(&pfd, 1, ms_until(deadline))) < 0 && errno == EINTR)
		continue;
	if (ready < 0)
		th_fail("poll: %s", strerror(errno));
	if (ready == 0)
		return;
	unsigned char buf[64];
	ssize_t got = recv(fd, buf, sizeof buf, 0);
	char text[128];
	if (got > 0)
		th_fail("expected no reply yet, because %s; but got %zd bytes: %s", why, got,
			show_bytes(buf, (size_t)got, 0, text, sizeof text));
	if (got == 0 || errno == ECONNRESET)
		th_fail("expected the connection to stay open and silent, because %s; "
			"but the server closed it", why);
}

void th_expect_eof(int fd)
{
	struct th_exchange ex = { .until_eof = true };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	char text[128];
	if (reply.len > 0)
		th_fail("expected the server to close the connection, but it sent %zu more bytes: %s",
			reply.len, show_bytes(reply.data, reply.len, 0, text, sizeof text));
	if (!reply.eof)
		th_fail("expected the server to close the connection within %d ms; it did not",
			th_ms(DEFAULT_TIMEOUT_MS));
	th_reply_free(&reply);
}

/* ---- Payloads ------------------------------------------------------------ */

void th_uppercase(const void *in, void *out, size_t len)
{
	const unsigned char *from = in;
	unsigned char *to = out;
	for (size_t i = 0; i < len; i++)
		to[i] = (from[i] >= 'a' && from[i] <= 'z') ? (unsigned char)(from[i] - 'a' + 'A') : from[i];
}

unsigned char *th_payload(size_t len, unsigned seed)
{
	unsigned char *data = malloc(len > 0 ? len : 1);
	if (data == NULL)
		th_fail("out of memory");
	uint32_t x = seed * 2654435761u + 1;	/* xorshift32 must not start at 0 */
	for (size_t i = 0; i < len; i++) {
		if (i < 256) {
			data[i] = (unsigned char)i;
			continue;
		}
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		data[i] = (unsigned char)x;
	}
	return data;
}

void th_echo_many(struct th_server *server, size_t clients, const void *data, size_t len,
		  size_t chunk, int timeout_ms)
{
	int *fds = calloc(clients, sizeof *fds);
	struct th_exchange *ex = calloc(clients, sizeof *ex);
	struct th_reply *replies = calloc(clients, sizeof *replies);
	if (fds == NULL || ex == NULL || replies == NULL)
		th_fail("out of memory for %zu clients", clients);
	/* All connected first: every exchange then runs while the server holds
	 * all the connections at once. */
	for (size_t i = 0; i < clients; i++) {
		fds[i] = th_connect(server);
		ex[i] = (struct th_exchange){ .send = data, .send_len = len, .chunk = chunk,
					      .want = len, .timeout_ms = timeout_ms };
	}
	th_exchange_many(fds, ex, replies, clients);
	for (size_t i = 0; i < clients; i++) {
		th_check_echo(data, len, &replies[i]);
		th_reply_free(&replies[i]);
		th_close(fds[i]);
	}
	free(fds);
	free(ex);
	free(replies);
}

long th_raise_fd_limit(long wanted)
{
	struct rlimit limit;
	if (getrlimit(RLIMIT_NOFILE, &limit) < 0)
		th_fail("getrlimit: %s", strerror(errno));
	limit.rlim_cur = limit.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
		th_fail("setrlimit: %s", strerror(errno));
	/* Room for the process's own descriptors besides the clients. */
	long room = limit.rlim_max == RLIM_INFINITY ? wanted : (long)limit.rlim_max - 64;
	if (room >= wanted)
		return wanted;
	fprintf(stderr, "note: RLIMIT_NOFILE's hard limit is %ld here: testing with %ld clients "
		"instead of %ld\n", (long)limit.rlim_max, room, wanted);
	return room;
}

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
