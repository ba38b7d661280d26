/* The servers a test starts: running them (through Valgrind or qemu when
 * asked), stopping them, and when something goes wrong, finding out what
 * they are doing: crashed, exited, busy on the CPU or asleep, where their
 * threads are and what their coroutines wait on. See harness.h. */
#define _GNU_SOURCE

#include "harness.h"
#include "harness_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash_report.h"
#include "promises.h"

enum {
	START_TIMEOUT_MS = 10000,   /* Valgrind takes a while to start a program */
	STOP_TIMEOUT_MS = 3000,
	STOP_REPORT_MS = 1500,      /* kept for the report on a server that does not stop */
	STOP_MIN_MS = 500,          /* the least a server is given to stop */
	RUN_SERVER_TIMEOUT_MS = 10000, /* for a command line that must end it */
	SAMPLE_MS = 300,            /* how long a server's CPU use is watched */
	REPORT_WAIT_MS = 1000,      /* for a backtrace or a dump to be written */
	REAP_WAIT_MS = 100,         /* for a server that is dying to be gone */
	STDERR_TAIL = 2048,
	MAX_ARGS = 64,
	MAX_ENV = 512,
};

struct th_server harness_servers[MAX_SERVERS];
int harness_n_servers;

static const char *required_env(const char *name)
{
	const char *value = getenv(name);
	if (value == NULL || value[0] == '\0')
		harness_fail(SYMPTOM_SETUP, "%s is not set: run the tests with make check, which sets it",
			     name);
	return value;
}

/* ---- Starting ------------------------------------------------------------ */

/* The environment for a server: ours, with LD_PRELOAD set to preload (or
 * left as it is when preload is NULL). Made before fork(): the child may only
 * make async-signal-safe calls. */
static char **server_environment(const char *preload)
{
	static char *env[MAX_ENV];
	static char variable[2048];
	int n = 0;
	for (char **e = environ; *e != NULL && n < MAX_ENV - 2; e++)
		if (preload == NULL || strncmp(*e, "LD_PRELOAD=", 11) != 0)
			env[n++] = *e;
	if (preload != NULL) {
		snprintf(variable, sizeof variable, "LD_PRELOAD=%s", preload);
		env[n++] = variable;
	}
	env[n] = NULL;
	return env;
}

/* Run in the child between fork() and exec(): only async-signal-safe calls. */
static _Noreturn void exec_server(char **argv, char **env, int stdout_fd, int stderr_fd)
{
	/* If the test process dies, take the server with it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (dup2(stdout_fd, STDOUT_FILENO) < 0 || dup2(stderr_fd, STDERR_FILENO) < 0)
		_exit(127);
	/* Check's own pipes and files have no close-on-exec flag; a server must
	 * start with just 0, 1 and 2, or the fd-limit tests would count them. */
	syscall(SYS_close_range, 3, ~0U, 0);
	execvpe(argv[0], argv, env);
	_exit(127);
}

/* Add the words of variable (split on spaces, into storage) to argv. */
static void add_words(char **argv, int *argc, const char *variable, char *storage, size_t size)
{
	const char *value = getenv(variable);
	snprintf(storage, size, "%s", value != NULL ? value : "");
	char *save;
	for (char *word = strtok_r(storage, " ", &save); word != NULL; word = strtok_r(NULL, " ", &save)) {
		if (*argc == MAX_ARGS - 1)
			harness_fail(SYMPTOM_SETUP, "too many words in %s", variable);
		argv[(*argc)++] = word;
	}
}

/* argv: the words of TH_WRAPPER, then the server, -p 0 when any_port, args
 * (NULL-terminated, or NULL), and the words of TH_SERVER_ARGS. */
static void build_argv(char **argv, const char *server, bool any_port, const char *const *args)
{
	static char wrapper[1024], extra[256];
	int argc = 0;
	add_words(argv, &argc, "TH_WRAPPER", wrapper, sizeof wrapper);
	if (argc > MAX_ARGS - 8)
		harness_fail(SYMPTOM_SETUP, "too many words in TH_WRAPPER");
	argv[argc++] = (char *)server;
	if (any_port) {
		argv[argc++] = "-p";
		argv[argc++] = "0";
	}
	for (int i = 0; args != NULL && args[i] != NULL; i++) {
		if (argc == MAX_ARGS - 1)
			harness_fail(SYMPTOM_SETUP, "too many server arguments");
		argv[argc++] = (char *)args[i];
	}
	add_words(argv, &argc, "TH_SERVER_ARGS", extra, sizeof extra);
	argv[argc] = NULL;
}

/* Is a tool (Valgrind, qemu) running the server? It reports crashes itself,
 * and the crash reporter would be in its way. */
static bool wrapped(void)
{
	const char *wrapper = getenv("TH_WRAPPER");
	return wrapper != NULL && wrapper[0] != '\0';
}

/* The LD_PRELOAD list a launch asks for: its own library first, so that its
 * dlsym(RTLD_NEXT) finds the shim's definitions, and the shim's the real
 * ones; the crash reporter last. NULL for none. */
static const char *preload_list(const struct th_launch *launch, bool *reports)
{
	static char list[2048];
	const char *parts[3];
	int n = 0;
	if (launch->preload != NULL)
		parts[n++] = launch->preload;
	if (launch->short_io)
		parts[n++] = required_env("TH_SHORT_IO");
	const char *reporter = getenv("TH_CRASH_REPORT");
	*reports = !wrapped() && reporter != NULL && reporter[0] != '\0';
	if (*reports)
		parts[n++] = reporter;
	if (n == 0)
		return NULL;
	size_t len = 0;
	list[0] = '\0';
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i > 0 ? ":" : "", parts[i]);
	return list;
}

/* Start launch->server (or TH_SERVER) as the launch says: its arguments,
 * -p 0 when any_port, its preloads, through TH_WRAPPER; its stdout and
 * stderr on these fds. Returns its pid; *reports says whether the crash
 * reporter is loaded into it. */
static pid_t spawn(const struct th_launch *launch, bool any_port, int stdout_fd, int stderr_fd,
		   bool *reports)
{
	const char *program = launch->server != NULL ? launch->server : required_env("TH_SERVER");
	char **env = server_environment(preload_list(launch, reports));
	char *argv[MAX_ARGS];
	build_argv(argv, program, any_port, launch->args);
	fflush(NULL);	/* or the child would flush our buffered output again */
	pid_t pid = fork();
	if (pid < 0)
		harness_fail(SYMPTOM_SETUP, "fork: %s", strerror(errno));
	if (pid == 0)
		exec_server(argv, env, stdout_fd, stderr_fd);
	return pid;
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
		harness_fail(SYMPTOM_SETUP, "%s: %s (does the build make it?)", path, strerror(errno));
	return path;
}

/* Read the first line the server prints, "listening on HOST:PORT". */
static void read_listening_line(struct th_server *s)
{
	char line[256];
	size_t len = 0;
	long long deadline = harness_now_ms() + th_ms(START_TIMEOUT_MS);
	while (len == 0 || line[len - 1] != '\n') {
		if (!harness_ready_by(s->stdout_fd, POLLIN, deadline))
			harness_fail(SYMPTOM_NO_REPLY, "HUNG: the server printed no \"listening on "
				     "HOST:PORT\" line within %d ms of starting", th_ms(START_TIMEOUT_MS));
		ssize_t got = read(s->stdout_fd, line + len, 1);
		if (got <= 0)
			harness_fail(SYMPTOM_CHECK, "the server closed its stdout before printing "
				     "\"listening on HOST:PORT\"");
		if (++len == sizeof line)
			harness_fail(SYMPTOM_CHECK, "the server's first line is too long");
	}
	line[len - 1] = '\0';

	const char *prefix = "listening on ";
	char *colon = strrchr(line, ':');
	if (strncmp(line, prefix, strlen(prefix)) != 0 || colon == NULL)
		harness_fail(SYMPTOM_CHECK, "the server's first line is \"%s\", expected \"listening "
			     "on HOST:PORT\"", line);
	*colon = '\0';
	char *host = line + strlen(prefix);
	if (host[0] == '[') {	/* an IPv6 address: [::1]:8000 */
		host++;
		host[strlen(host) - 1] = '\0';
	}
	if (strlen(host) >= sizeof s->host || strlen(colon + 1) >= sizeof s->port)
		harness_fail(SYMPTOM_CHECK, "the server's first line has an address too long to be "
			     "real: %s", host);
	strcpy(s->host, host);
	strcpy(s->port, colon + 1);
}

struct th_server *th_start(const struct th_launch *launch)
{
	static const struct th_launch defaults;
	if (launch == NULL)
		launch = &defaults;
	if (harness_n_servers == MAX_SERVERS)
		harness_fail(SYMPTOM_SETUP, "a test may start at most %d servers", MAX_SERVERS);

	struct th_server *s = &harness_servers[harness_n_servers];
	*s = (struct th_server){ .stdout_fd = -1 };
	const char *tmp = getenv("TMPDIR");
	snprintf(s->stderr_path, sizeof s->stderr_path, "%s/th-stderr-XXXXXX",
		 tmp != NULL ? tmp : "/tmp");
	int stderr_fd = mkstemp(s->stderr_path);
	if (stderr_fd < 0)
		harness_fail(SYMPTOM_SETUP, "mkstemp %s: %s", s->stderr_path, strerror(errno));
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		harness_fail(SYMPTOM_SETUP, "pipe: %s", strerror(errno));

	pid_t pid = spawn(launch, true, out[1], stderr_fd, &s->reports_crashes);
	close(out[1]);
	close(stderr_fd);
	s->pid = pid;
	s->stdout_fd = out[0];
	harness_n_servers++;
	read_listening_line(s);

	/* Lower the descriptor limit only now that the server is up: a wrapper
	 * such as Valgrind needs descriptors of its own to start. */
	struct rlimit limit;
	if (launch->fd_limit > 0) {
		if (prlimit(pid, RLIMIT_NOFILE, NULL, &limit) < 0)
			harness_fail(SYMPTOM_SETUP, "prlimit: %s", strerror(errno));
		limit.rlim_cur = (rlim_t)launch->fd_limit;
		if (prlimit(pid, RLIMIT_NOFILE, &limit, NULL) < 0)
			harness_fail(SYMPTOM_SETUP, "prlimit: %s", strerror(errno));
	}

	if (launch->short_io) {
		char banner[160];
		const char *server = launch->server != NULL ? launch->server : getenv("TH_SERVER");
		const char *slash = strrchr(server, '/');
		snprintf(banner, sizeof banner, "short_io: loaded into %s:", slash != NULL ? slash + 1 : server);
		if (strstr(th_server_stderr(s), banner) == NULL)
			harness_fail(SYMPTOM_SETUP, "the short-I/O shim (LD_PRELOAD=%s) did not load into "
				     "the server", getenv("TH_SHORT_IO"));
	}
	return s;
}

/* ---- Programs that end ----------------------------------------------------- */

/* Read what fd says until it closes or the deadline passes; false at the
 * deadline. */
static bool read_until_eof(int fd, char *out, size_t size, long long deadline)
{
	size_t len = 0;
	while (harness_ready_by(fd, POLLIN, deadline)) {
		char sink[256];
		bool room = len < size - 1;
		ssize_t got = read(fd, room ? out + len : sink, room ? size - 1 - len : sizeof sink);
		if (got == 0) {
			out[len] = '\0';
			return true;
		}
		if (got < 0 && errno != EINTR)
			harness_fail(SYMPTOM_SETUP, "read a program's output: %s", strerror(errno));
		if (got > 0 && room)
			len += (size_t)got;
	}
	out[len] = '\0';
	return false;
}

int th_run_program(const struct th_launch *launch, int timeout_ms, char *out, size_t out_size)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		harness_fail(SYMPTOM_SETUP, "pipe: %s", strerror(errno));
	bool reports;
	pid_t pid = spawn(launch, false, pipefd[1], pipefd[1], &reports);
	close(pipefd[1]);
	bool ended = read_until_eof(pipefd[0], out, out_size, harness_now_ms() + th_ms(timeout_ms));
	close(pipefd[0]);
	if (!ended)
		kill(pid, SIGKILL);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			harness_fail(SYMPTOM_SETUP, "waitpid: %s", strerror(errno));
	if (!ended)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int th_run_server(const char *const *args, char *err, size_t err_size)
{
	struct th_launch launch = { .args = args };
	int status = th_run_program(&launch, RUN_SERVER_TIMEOUT_MS, err, err_size);
	if (status < 0)
		harness_fail(SYMPTOM_CHECK, "HUNG: the server, run with a command line it should reject "
			     "or fail on, was still running after %d ms; its output:\n%s",
			     th_ms(RUN_SERVER_TIMEOUT_MS), err);
	return status;
}

/* ---- Looking at a running server ------------------------------------------ */

/* Read /proc/PID/name (or /proc/PID/task/TID/name) into buf; false if the
 * process is gone. */
static bool read_proc(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t got = read(fd, buf, size - 1);
	close(fd);
	buf[got > 0 ? got : 0] = '\0';
	return got > 0;
}

/* The state letter (proc(5): R running, S sleeping...) and CPU clock ticks
 * of a process or thread, from its stat file. */
static bool read_stat(const char *path, char *state, unsigned long *ticks)
{
	char stat[1024];
	if (!read_proc(path, stat, sizeof stat))
		return false;
	/* Fields 3, 14 and 15: state, utime and stime; the command name (field
	 * 2) is in parentheses and may hold spaces, so count from the last ')'. */
	const char *p = strrchr(stat, ')');
	unsigned long utime, stime;
	if (p == NULL || sscanf(p + 2, "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
				state, &utime, &stime) != 3)
		return false;
	*ticks = utime + stime;
	return true;
}

long th_server_cpu_ms(const struct th_server *s)
{
	char path[64], state;
	unsigned long ticks;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)s->pid);
	if (!read_stat(path, &state, &ticks))
		harness_fail(SYMPTOM_CHECK, "cannot read %s: has the server exited?", path);
	return (long)(ticks * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

long th_server_rss_kib(const struct th_server *s)
{
	char path[64], status[4096];
	snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
	if (!read_proc(path, status, sizeof status))
		harness_fail(SYMPTOM_CHECK, "cannot read %s: has the server exited?", path);
	const char *line = strstr(status, "\nVmRSS:");
	long kib;
	if (line == NULL || sscanf(line, "\nVmRSS: %ld", &kib) != 1)
		harness_fail(SYMPTOM_CHECK, "no VmRSS in %s", path);
	return kib;
}

/* The server's stderr from byte `from` on, at most size - 1 bytes of it: its
 * last ones if it does not fit, or with `head` its first. Returns whether it
 * did not fit. */
static bool read_stderr_part(const struct th_server *s, off_t from, char *out, size_t size, bool head)
{
	out[0] = '\0';
	int fd = open(s->stderr_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	off_t end = lseek(fd, 0, SEEK_END);
	bool cut = end - from > (off_t)size - 1;
	if (cut && head)
		end = from + (off_t)size - 1;
	else if (cut)
		from = end - (off_t)size + 1;
	ssize_t got = end > from ? pread(fd, out, (size_t)(end - from), from) : 0;
	out[got > 0 ? got : 0] = '\0';
	close(fd);
	return cut;
}

/* Its last size - 1 bytes at most. */
static void read_stderr(const struct th_server *s, off_t from, char *out, size_t size)
{
	read_stderr_part(s, from, out, size, false);
}

static off_t stderr_size(const struct th_server *s)
{
	struct stat st;
	return stat(s->stderr_path, &st) == 0 ? st.st_size : 0;
}

const char *th_server_stderr(const struct th_server *s)
{
	static char tail[STDERR_TAIL + 1];
	read_stderr(s, 0, tail, sizeof tail);
	return tail;
}

int th_kernel_threads(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		th_fail("opendir %s: %s (has the process exited?)", path, strerror(errno));
	int n = 0;
	for (struct dirent *entry; (entry = readdir(dir)) != NULL;)
		n += entry->d_name[0] != '.';
	closedir(dir);
	return n - th_runner_threads();
}

int th_runner_threads(void)
{
	const char *runner = getenv("TH_RUNNER_THREADS");
	return runner != NULL ? atoi(runner) : 0;
}

bool th_stderr_shows(const struct th_server *s, const char *text, int ms)
{
	long long deadline = harness_now_ms() + harness_cut_ms(ms);
	for (;;) {
		if (strstr(th_server_stderr(s), text) != NULL)
			return true;
		if (harness_now_ms() >= deadline)
			return false;
		th_sleep_ms(20);
	}
}

/* Wait until the server's stderr has grown past `from` and then stopped
 * growing for a moment, or until ms have passed; true if it grew. */
static bool wait_for_stderr(const struct th_server *s, off_t from, int ms)
{
	long long deadline = harness_now_ms() + th_ms(ms);
	off_t seen = from;
	long long still_since = 0;
	while (harness_now_ms() < deadline) {
		th_sleep_ms(20);
		off_t size = stderr_size(s);
		if (size != seen) {
			seen = size;
			still_since = harness_now_ms();
		} else if (seen > from && harness_now_ms() - still_since >= th_ms(150)) {
			return true;
		}
	}
	return seen > from;
}

/* Wait until the server's stderr, after `from`, shows text, or ms passed. */
static bool wait_for_text(const struct th_server *s, off_t from, const char *text, int ms)
{
	long long deadline = harness_now_ms() + th_ms(ms);
	static char since[STDERR_TAIL + 1];
	for (;;) {
		read_stderr(s, from, since, sizeof since);
		if (strstr(since, text) != NULL)
			return true;
		if (harness_now_ms() >= deadline)
			return false;
		th_sleep_ms(20);
	}
}

/* Percent of one CPU the server used over a moment (all its threads). */
static int busy_percent(const struct th_server *s, int sample_ms)
{
	char path[64], state;
	unsigned long before, after;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)s->pid);
	if (!read_stat(path, &state, &before))
		return -1;
	long long start = harness_now_ms();
	th_sleep_ms(sample_ms);
	if (!read_stat(path, &state, &after))
		return -1;
	long long wall = harness_now_ms() - start;
	long tick_ms = 1000 / sysconf(_SC_CLK_TCK);
	if (wall <= 0)
		return -1;
	/* Clock ticks are coarse: a sample may count a tick more than the
	 * moment held. More than one CPU's worth is a threaded server's. */
	long long percent = (long long)(after - before) * tick_ms * 100 / wall;
	return (int)percent;
}

/* Ask the threads of the server that are on the CPU (or, if none is, its
 * main thread) where they are: the crash reporter answers SIGPWR with a
 * backtrace on stderr. Returns how many were asked. */
static int ask_where(const struct th_server *s)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)s->pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		return 0;
	int asked = 0;
	for (struct dirent *e; (e = readdir(dir)) != NULL;) {
		pid_t tid = (pid_t)atoi(e->d_name);
		char stat_path[96], state;
		unsigned long ticks;
		snprintf(stat_path, sizeof stat_path, "%s/%d/stat", path, (int)tid);
		if (tid > 0 && read_stat(stat_path, &state, &ticks) && state == 'R' && asked < 4 &&
		    syscall(SYS_tgkill, s->pid, tid, SIGPWR) == 0)
			asked++;
	}
	closedir(dir);
	if (asked == 0 && syscall(SYS_tgkill, s->pid, s->pid, SIGPWR) == 0)
		asked = 1;
	return asked;
}

/* Add the last lines of what the server wrote from `from` on, or say that it
 * wrote nothing. */
/* The server's stderr from `from` on, as text_add_indented() shows it: its
 * last max_lines lines, or with max_lines < 0 its first ones (a long
 * coroutine dump is read from its start: its heading comes first). */
static void add_stderr(struct text *t, const struct th_server *s, off_t from, int max_lines)
{
	char out[1600];
	bool cut = read_stderr_part(s, from, out, sizeof out, max_lines < 0);
	if (max_lines >= 0 || !cut) {
		text_add_indented(t, out, max_lines);
		return;
	}
	/* More than was read: whole lines only, as many as asked, and no count
	 * of the lines left out, which only the server's stderr file knows. */
	char *end = out;
	for (int line = 0; line < -max_lines; line++) {
		char *next = strchr(end, '\n');
		if (next == NULL)
			break;
		end = next + 1;
	}
	*end = '\0';
	text_add_indented(t, out, 0);
	text_add(t, "\n    (the rest left out)");
}

/* Has the server written anything but the short-I/O shim's greeting? */
static bool said_something(const struct th_server *s)
{
	const char *err = th_server_stderr(s);
	if (strncmp(err, "short_io: ", 10) == 0) {
		const char *end = strchr(err, '\n');
		err = end != NULL ? end + 1 : "";
	}
	return err[0] != '\0';
}

/* The first server of the chapter's run found hung is asked where it is
 * and what its coroutines wait on, even after an earlier hang of the test
 * process (which says nothing of the server's side); later ones are only
 * sampled, to keep a broken chapter's run short. A file next to
 * TH_HANG_FILE remembers it across test binaries. */
static bool first_server_hang(void)
{
	const char *hang_file = getenv("TH_HANG_FILE");
	if (hang_file == NULL || hang_file[0] == '\0')
		return true;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s.server", hang_file);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return false;	/* there already: an earlier server was asked */
	close(fd);
	return true;
}

/* Describe one running server that did not answer in time. */
static bool diagnose(struct text *t, struct th_server *s, int number)
{
	const struct th_promise *promise = th_promise();
	int busy = busy_percent(s, harness_aftermath ? SAMPLE_MS / 6 : SAMPLE_MS);
	const char *which = harness_n_servers > 1 ? (number == 0 ? " first" : " next") : "";
	if (busy < 0)
		return false;
	if (promise->spins_when_idle)
		text_add(t, "\n  The%s server is still running, using the CPU (this chapter's "
			 "server always spins, so that says nothing).", which);
	else if (busy >= 50)
		text_add(t, "\n  HUNG: the%s server is still running, busy on the CPU (about %d%% of "
			 "one), and answers nobody.", which, busy > 100 ? 100 : busy);
	else
		text_add(t, "\n  HUNG: the%s server is still running, asleep (%d%% of a CPU): it is "
			 "waiting for something.", which, busy);
	if (said_something(s)) {
		text_add(t, "\n  Its stderr so far ends with:");
		add_stderr(t, s, 0, 6);
	}
	if (!first_server_hang()) {
		text_add(t, "\n  (An earlier test hung: its report says where. Fix that one first.)");
		return busy >= 50 && !promise->spins_when_idle;
	}

	/* A server with coroutines says best what each of them waits on; one
	 * that cannot (its hub never runs), or has no coroutines, is asked
	 * where its thread is. One question at a time: their answers would
	 * mix on stderr. */
	bool dumped = false;
	if (promise->dump_signal != 0) {
		off_t from = stderr_size(s);
		if (kill(s->pid, promise->dump_signal) == 0 && wait_for_stderr(s, from, REPORT_WAIT_MS)) {
			text_add(t, "\n  Its coroutines (the dump it printed on %s):",
				 promise->dump_signal == SIGUSR1 ? "SIGUSR1" : "a signal");
			add_stderr(t, s, from, -14);
			dumped = true;
		} else {
			text_add(t, "\n  It printed no coroutine dump within %d ms of SIGUSR1: %s",
				 th_ms(REPORT_WAIT_MS), busy >= 50 ?
				 "its hub never got to run, so a coroutine holds the thread without "
				 "waiting." :
				 "the coroutine that handles signals waits for them through the hub, "
				 "and the hub never woke it, so its waits are not woken at all.");
		}
	}
	if (!dumped && s->reports_crashes) {
		off_t from = stderr_size(s);
		if (ask_where(s) > 0 && (wait_for_text(s, from, WHERE_END, 2 * REPORT_WAIT_MS) ||
					 stderr_size(s) > from)) {
			text_add(t, "\n  Where it was (it was asked with SIGPWR):");
			add_stderr(t, s, from, 14);
		}
	}
	return busy >= 50 && !promise->spins_when_idle;
}

bool harness_diagnose_servers(struct text *t)
{
	bool busy = false;
	for (int i = 0; i < harness_n_servers; i++)
		if (harness_servers[i].pid > 0)
			busy |= diagnose(t, &harness_servers[i], i);
	return busy;
}

/* ---- Servers that ended ---------------------------------------------------- */

/* Describe how a child process ended, from its wait status. */
static void describe_status(int status, char *text, size_t size)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 99)
		snprintf(text, size, "exited with status 99: Valgrind or a sanitizer found errors (see its stderr)");
	else if (WIFEXITED(status))
		snprintf(text, size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(text, size, "CRASHED: it was killed by %s (signal %d, %s)",
			 cr_signal_name(WTERMSIG(status)), WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(text, size, "ended with wait status %#x", (unsigned)status);
}

/* A server that just died may not be a zombie yet: its sockets close (and
 * the client sees the end of the connection) before the kernel reports its
 * end, and the crash reporter takes a moment too. */
static void wait_for_an_end(void)
{
	for (int round = 0; round < REAP_WAIT_MS / 10; round++) {
		for (int i = 0; i < harness_n_servers; i++) {
			siginfo_t info = { .si_pid = 0 };
			if (harness_servers[i].pid > 0 &&
			    waitid(P_PID, (id_t)harness_servers[i].pid, &info,
				   WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0)
				return;
		}
		th_sleep_ms(10);
	}
}

int harness_reap_servers(struct text *t, bool dying, int *crashed, int *crash_signal)
{
	int ended = 0;
	if (dying)
		wait_for_an_end();
	for (int i = 0; i < harness_n_servers; i++) {
		struct th_server *s = &harness_servers[i];
		int status;
		if (s->pid <= 0 || waitpid(s->pid, &status, WNOHANG) != s->pid)
			continue;
		s->pid = 0;
		ended++;
		if (WIFSIGNALED(status)) {
			(*crashed)++;
			*crash_signal = WTERMSIG(status);
		}
		char how[160];
		describe_status(status, how, sizeof how);
		if (th_server_stderr(s)[0] == '\0') {
			text_add(t, "\n  The server %s while the test still needed it, printing nothing "
				 "on stderr.", how);
		} else {
			text_add(t, "\n  The server %s while the test still needed it. Its stderr ends "
				 "with:", how);
			add_stderr(t, s, 0, 24);
		}
	}
	return ended;
}

/* ---- Stopping -------------------------------------------------------------- */

void th_stop(struct th_server *s)
{
	if (s->pid <= 0)
		return;
	pid_t pid = s->pid;
	if (kill(pid, SIGTERM) < 0)
		harness_fail(SYMPTOM_SETUP, "kill %d: %s", (int)pid, strerror(errno));

	int status;
	/* Long enough for any server that stops, but over before the test's
	 * own deadline, with time left to ask the server what it is doing:
	 * the failure then says the server did not exit. */
	int wait_ms = harness_cut_ms(STOP_TIMEOUT_MS);
	int left = harness_ms_left() - th_ms(STOP_REPORT_MS);
	int least = wait_ms < th_ms(STOP_MIN_MS) ? wait_ms : th_ms(STOP_MIN_MS);
	if (left < wait_ms)
		wait_ms = left > least ? left : least;
	long long deadline = harness_now_ms() + wait_ms;
	pid_t done;
	while ((done = waitpid(pid, &status, WNOHANG)) == 0 && harness_now_ms() < deadline)
		th_sleep_ms(10);
	if (done == 0) {
		static char report[MAX_MESSAGE];
		struct text t = { report, sizeof report, 0 };
		bool busy = diagnose(&t, s, 0);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		s->pid = 0;
		harness_note_hang();
		harness_fail_because(busy ? "a loop that never waits: the signal is never handled, "
				     "because the code that would handle it never gets to run" :
				     "the server waits in a call that the signal does not end, or it "
				     "handles the signal without stopping what it waits for",
				     "HUNG: the server did not exit within %d ms of SIGTERM (so it was "
				     "killed).%s", wait_ms, report);
	}
	s->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char how[160];
		describe_status(status, how, sizeof how);
		static char err[STDERR_TAIL + 1];
		snprintf(err, sizeof err, "%s", th_server_stderr(s));
		harness_fail_because(WIFSIGNALED(status) ? cr_signal_cause(WTERMSIG(status)) :
				     "an error on the way out: its stderr says which",
				     "on SIGTERM the server should exit with status 0, but it %s. "
				     "Its stderr ends with:\n%s", how, err);
	}
}

/* Forget the servers: their stderr files and pipes. */
static void release_servers(void)
{
	for (int i = 0; i < harness_n_servers; i++) {
		if (harness_servers[i].stdout_fd >= 0)
			close(harness_servers[i].stdout_fd);
		unlink(harness_servers[i].stderr_path);
	}
	harness_n_servers = 0;
}

void harness_stop_servers(void)
{
	for (int i = 0; i < harness_n_servers; i++)
		if (harness_servers[i].pid > 0)
			th_stop(&harness_servers[i]);
	release_servers();
}

void harness_kill_servers(void)
{
	for (int i = 0; i < harness_n_servers; i++) {
		if (harness_servers[i].pid > 0) {
			kill(harness_servers[i].pid, SIGKILL);
			waitpid(harness_servers[i].pid, NULL, 0);
			harness_servers[i].pid = 0;
		}
	}
	release_servers();
}
