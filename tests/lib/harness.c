/* The course's test harness: suites, each test's deadline, and failures that
 * say what happened (a wrong reply, a crash, a hang) and which TODO to look
 * at; see harness.h. Servers are started and examined in servers.c, clients
 * talk to them in clients.c. */
#define _GNU_SOURCE

#include "harness.h"
#include "harness_private.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "crash_report.h"

enum {
	/* A test that has not finished after this long has hung (stretched by
	 * TH_TIME_SCALE). Every test here takes well under a second when the
	 * code is right, bar a few that say how long they need. */
	DEFAULT_DEADLINE_S = 3,
	/* Check's own timeout comes this much later: time to write the report
	 * (each server's state is sampled for a moment). */
	REPORT_MARGIN_S = 10,
	/* A test that has failed has this long to write its report (looking
	 * at its servers), well within REPORT_MARGIN_S. */
	REPORT_S = 5,
	/* After a hang, the rest of the chapter's deadlines are cut to an
	 * eighth (no less than half a second), and waits that cannot tell slow
	 * from stuck (a connect, an exit, a conversation where no byte moves)
	 * to a sixteenth (no less than 150 ms): correct code never gets here,
	 * and a broken chapter's run stays short. */
	AFTERMATH_CUT = 8,
	AFTERMATH_DEADLINE_MS = 500,
	AFTERMATH_STALL_CUT = 16,
	AFTERMATH_STALL_MS = 150,
	MAX_TESTS = 256,
};

/* ---- Text ---------------------------------------------------------------- */

void text_add_v(struct text *t, const char *fmt, va_list args)
{
	if (t->len + 1 >= t->size)
		return;
	int n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, args);
	if (n > 0)
		t->len += (size_t)n < t->size - t->len ? (size_t)n : t->size - t->len - 1;
}

void text_add(struct text *t, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	text_add_v(t, fmt, args);
	va_end(args);
}

void text_add_indented(struct text *t, const char *s, int max_lines)
{
	int lines = 0;
	for (const char *p = s; *p != '\0'; p++)
		lines += *p == '\n' || p[1] == '\0';
	/* max_lines > 0 keeps the last lines, < 0 the first ones. */
	int left_out = lines - abs(max_lines);
	for (int skip = max_lines > 0 ? left_out : 0; skip > 0; skip--) {
		const char *next = strchr(s, '\n');
		if (next == NULL)
			break;
		s = next + 1;
	}
	if (max_lines > 0 && left_out > 0)
		text_add(t, "\n    (%d earlier lines left out)", left_out);
	for (int shown = 0; *s != '\0' && (max_lines >= 0 || shown < -max_lines); shown++) {
		size_t len = strcspn(s, "\n");
		text_add(t, "\n    %.*s", (int)len, s);
		s += len + (s[len] == '\n');
	}
	if (max_lines < 0 && left_out > 0)
		text_add(t, "\n    (%d more lines left out)", left_out);
}

/* ---- Time ---------------------------------------------------------------- */

int th_ms(int ms)
{
	const char *scale = getenv("TH_TIME_SCALE");
	int factor = scale != NULL ? atoi(scale) : 1;
	return ms * (factor > 0 ? factor : 1);
}

long long harness_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int harness_ms_until(long long deadline)
{
	long long left = deadline - harness_now_ms();
	return left > 0 ? (int)left : 0;
}

bool harness_ready_by(int fd, short events, long long deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int ready;
	while ((ready = poll(&pfd, 1, harness_ms_until(deadline))) < 0 && errno == EINTR)
		continue;
	if (ready < 0)
		harness_fail(SYMPTOM_SETUP, "poll: %s", strerror(errno));
	return ready > 0;
}

void th_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		continue;
}

/* One hang is enough to know: once a test of this chapter's run has hung,
 * make check would otherwise wait out the same hang in every later test.
 * The chapter's makefile names a file (TH_HANG_FILE) and removes it before
 * the run; the first hang creates it, and later tests give up sooner: at an
 * eighth of their deadline, and in a conversation where nothing moves for
 * a sixteenth of its time (their messages say so). A conversation that flows,
 * however slowly, goes on as usual; a test that takes its time by design
 * has a deadline of eight times that time at least. */
bool harness_aftermath;

void harness_note_hang(void)
{
	const char *path = getenv("TH_HANG_FILE");
	if (path == NULL || path[0] == '\0')
		return;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}

void th_note_hang(void)
{
	harness_note_hang();
}

static bool earlier_hang(void)
{
	const char *path = getenv("TH_HANG_FILE");
	return path != NULL && path[0] != '\0' && access(path, F_OK) == 0;
}

static int cut_short(int ms, int floor)
{
	if (!harness_aftermath || ms / AFTERMATH_CUT >= floor)
		return harness_aftermath ? ms / AFTERMATH_CUT : ms;
	return ms < floor ? ms : floor;
}

int harness_cut_ms(int ms)
{
	if (!harness_aftermath)
		return th_ms(ms);
	int cut = th_ms(ms) / AFTERMATH_STALL_CUT;
	return cut > th_ms(AFTERMATH_STALL_MS) ? cut : th_ms(AFTERMATH_STALL_MS);
}

int harness_stall_ms(int timeout_ms)
{
	if (!harness_aftermath)
		return 0;
	int stall = timeout_ms / AFTERMATH_STALL_CUT;
	return stall > th_ms(AFTERMATH_STALL_MS) ? stall : th_ms(AFTERMATH_STALL_MS);
}

/* ---- The test under way --------------------------------------------------- */

static struct {
	char name[128];          /* the test function's name */
	const char *file;        /* where it called th_about() */
	int line;
	const char *todos;
	const char *hint;
	int expected_signal;     /* th_test_raise_signal(): a crash that passes */
} current = { .todos = "", .hint = "" };

/* Every test and test case of the suite: for TH_LIST_TESTS, for the
 * deadlines, and for the tests that must end by a signal. */
static struct listed_test {
	const char *test;
	TCase *tc;
	const char *tcase;
	const char *todos;
	int signal;
	int deadline_s;
} listed[MAX_TESTS];
static int n_listed;
static struct listed_tcase {
	TCase *tc;
	const char *name;
	const char *todos;
	int deadline_s;
} tcases[MAX_TESTS];
static int n_tcases;

static void arm_watchdog(int deadline_ms);
static void give_the_report_time(void);
static int test_deadline_ms(int deadline_s);

/* What the crash handler writes, prepared beforehand: a handler may only
 * write what is ready. */
static char crash_heading[256];
static char crash_todos[256];

static const char *lesson(void)
{
	const char *path = getenv("TH_LESSON");
	return path != NULL ? path : "the chapter's README.md";
}

void th_about_test(const char *file, int line, const char *function, const char *todos,
		   const char *likely_cause)
{
	/* START_TEST(name) defines name_fn(). */
	size_t len = strlen(function);
	if (len > 3 && strcmp(function + len - 3, "_fn") == 0)
		len -= 3;
	snprintf(current.name, sizeof current.name, "%.*s", (int)len, function);
	current.file = file;
	current.line = line;
	current.todos = todos != NULL ? todos : "";
	current.hint = likely_cause != NULL ? likely_cause : "";
	current.expected_signal = 0;
	int deadline_s = DEFAULT_DEADLINE_S;
	for (int i = 0; i < n_listed; i++) {
		if (strcmp(listed[i].test, current.name) != 0)
			continue;
		current.expected_signal = listed[i].signal;
		deadline_s = listed[i].deadline_s;
	}
	/* The test's own deadline, from when it started (setup() armed the
	 * default: Check does not tell a fixture which test it sets up). */
	arm_watchdog(test_deadline_ms(deadline_s));
	/* A crash or Check's own timeout is then reported at this line. */
	_mark_point(file, line);
	snprintf(crash_heading, sizeof crash_heading, "CRASHED: the test process, running %s (%s:%d), "
		 "was killed by ", current.name, file, line);
	crash_todos[0] = '\0';
	if (current.todos[0] != '\0')
		snprintf(crash_todos, sizeof crash_todos, "  This test checks TODO %s (%s, \"Your turn\").\n",
			 current.todos, lesson());
}

/* ---- Failing with a message that teaches ---------------------------------- */

static void add_todos(struct text *t)
{
	if (current.todos[0] != '\0')
		text_add(t, "\n  This test checks TODO %s (%s, \"Your turn\").", current.todos, lesson());
}

/* Hand the message to Check, as a failure at the test's own line. */
static _Noreturn void fail_here(const char *msg)
{
	const char *file = current.file != NULL ? current.file : __FILE__;
	_ck_assert_failed(file, current.file != NULL ? current.line : __LINE__, "Failed", "%s", msg);
}

/* The likely cause of a failure is what happened, if something did (a
 * crash, an exit, a hang); the test's own hint only when the server did
 * answer, wrongly; `cause` instead of either when the caller knows. */
static _Noreturn void fail_v(enum symptom symptom, const char *cause, const char *fmt, va_list args)
{
	static char buf[MAX_MESSAGE];
	struct text t = { buf, sizeof buf, 0 };
	text_add_v(&t, fmt, args);
	/* The test has failed: looking at its servers takes a moment, which
	 * must not turn this failure into a hang of its own. */
	give_the_report_time();

	/* What happened to the servers decides what is likely wrong. */
	int crashed = 0, signal = 0;
	bool waited = symptom == SYMPTOM_NO_REPLY || symptom == SYMPTOM_STALLED;
	int ended = harness_reap_servers(&t, !waited, &crashed, &signal);
	bool hung = ended == 0 && waited && harness_n_servers > 0;
	bool busy = false;
	if (hung) {
		busy = harness_diagnose_servers(&t);
		harness_note_hang();
	}
	add_todos(&t);
	if (crashed > 0)
		text_add(&t, "\n  Likely cause: the server crashed with %s: %s.", cr_signal_name(signal),
			 cr_signal_cause(signal));
	else if (cause != NULL)
		text_add(&t, "\n  Likely cause: %s.", cause);
	else if (ended > 0)
		text_add(&t, "\n  Likely cause: the server ended while clients still needed it: its last "
			 "line on stderr says why (an error treated as fatal?), or a loop meant to run "
			 "for ever returned.");
	else if (hung && busy)
		text_add(&t, "\n  Likely cause: a loop that never waits: it goes round and round (on "
			 "EAGAIN, say) without ever parking or sleeping, so nothing else runs. The "
			 "backtrace above shows where.");
	else if (current.hint[0] != '\0' && symptom != SYMPTOM_SETUP && symptom != SYMPTOM_NO_REPLY)
		text_add(&t, "\n  Likely cause: %s.", current.hint);
	else if (hung)
		text_add(&t, "\n  Likely cause: the server is waiting for something that never comes: "
			 "a wake-up that was lost, or a wait on the wrong fd, direction or condition.");
	fail_here(buf);
}

void harness_fail(enum symptom symptom, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	fail_v(symptom, NULL, fmt, args);
}

void harness_fail_because(const char *cause, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	fail_v(SYMPTOM_CHECK, cause, fmt, args);
}

void th_fail(const char *fmt, ...)
{
	static char msg[MAX_MESSAGE];
	va_list args;
	va_start(args, fmt);
	vsnprintf(msg, sizeof msg, fmt, args);
	va_end(args);
	harness_fail(SYMPTOM_CHECK, "%s", msg);
}

/* ---- Crashes of the test process ------------------------------------------ */

static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS };

static void on_crash(int signal, siginfo_t *info, void *ucontext)
{
	if (signal == current.expected_signal) {
		raise(signal);	/* the test passes by dying of it */
		return;
	}
	cr_write(STDERR_FILENO, crash_heading);
	cr_write_crash(STDERR_FILENO, signal, info, ucontext);
	cr_write(STDERR_FILENO, crash_todos);
	cr_write(STDERR_FILENO, "  Likely cause: ");
	cr_write(STDERR_FILENO, cr_signal_cause(signal));
	cr_write(STDERR_FILENO, ".\n");
	/* SA_RESETHAND restored the default action: once this handler
	 * returns, the signal ends the process and Check reports it. */
	raise(signal);
}

/* ---- Hangs of the test process -------------------------------------------- */

/* A thread that watches the clock while the test runs; if the test is still
 * running at its deadline, it stops the test's thread where it is (SIGPWR,
 * whose handler notes the frames and waits), writes down what everything was
 * doing, and fails the test. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	long long deadline;      /* 0: disarmed */
	bool started;
	pthread_t test_thread;
	sem_t captured;          /* posted by the handler once frames are noted */
	int deadline_ms;         /* as armed, for the report */
	void *frames[CR_MAX_FRAMES];
	size_t n_frames;
} dog = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_where(int signal, siginfo_t *info, void *ucontext)
{
	(void)signal;
	(void)info;
	dog.n_frames = cr_frames(ucontext, dog.frames, CR_MAX_FRAMES);
	sem_post(&dog.captured);
	for (;;)	/* the watchdog ends the process */
		pause();
}

/* CPU time the test's thread uses over a moment, in percent of one CPU. */
static int test_thread_busy_percent(void)
{
	clockid_t clock;
	if (pthread_getcpuclockid(dog.test_thread, &clock) != 0)
		return -1;
	struct timespec a, b;
	clock_gettime(clock, &a);
	long long start = harness_now_ms();
	th_sleep_ms(harness_aftermath ? 50 : 200);
	clock_gettime(clock, &b);
	long long wall = harness_now_ms() - start;
	long long cpu = (b.tv_sec - a.tv_sec) * 1000LL + (b.tv_nsec - a.tv_nsec) / 1000000;
	return wall > 0 ? (int)(cpu * 100 / wall) : -1;
}

/* The frames the handler noted, as addr2line writes them. */
static void add_frames(struct text *t)
{
	int fd = memfd_create("frames", MFD_CLOEXEC);
	if (fd < 0) {
		text_add(t, "\n    (no backtrace: memfd_create: %s)", strerror(errno));
		return;
	}
	cr_write_frames(fd, dog.frames, dog.n_frames);
	char frames[1500];
	ssize_t got = pread(fd, frames, sizeof frames - 1, 0);
	close(fd);
	frames[got > 0 ? got : 0] = '\0';
	text_add(t, "\n%s", frames);
	if (t->len > 0 && t->buf[t->len - 1] == '\n')
		t->buf[--t->len] = '\0';
}

/* The chapter's co_dump(), when the test links it (chapters 05 on). */
extern void co_dump(FILE *out) __attribute__((weak));

static void add_coroutine_dump(struct text *t)
{
	if (co_dump == NULL)
		return;
	static char dump[2048];
	FILE *out = fmemopen(dump, sizeof dump, "w");
	if (out == NULL)
		return;
	co_dump(out);
	fclose(out);
	text_add(t, "\n  The test's coroutines (co_dump()):");
	text_add_indented(t, dump, -12);
}

static _Noreturn void report_overrun(void)
{
	static char buf[MAX_MESSAGE];
	struct text t = { buf, sizeof buf, 0 };
	text_add(&t, "HUNG: the test was still running %d ms after it started: it would never have "
		 "finished%s.", dog.deadline_ms, harness_aftermath ? " (its deadline was cut short "
		 "because an earlier test hung: fix that one first)" : "");
	int busy = test_thread_busy_percent();
	struct timespec wait;
	clock_gettime(CLOCK_REALTIME, &wait);
	wait.tv_sec += 1;
	if (pthread_kill(dog.test_thread, SIGPWR) == 0 && sem_timedwait(&dog.captured, &wait) == 0) {
		text_add(&t, "\n  The test process was %s, in:", busy >= 50 ? "busy on the CPU" :
			 "asleep, waiting in the kernel");
		add_frames(&t);
	} else {
		text_add(&t, "\n  The test process was %s.", busy >= 50 ? "busy on the CPU" : "asleep");
	}
	add_coroutine_dump(&t);
	int crashed = 0, signal = 0;
	if (harness_reap_servers(&t, false, &crashed, &signal) == 0 && harness_n_servers > 0)
		busy = harness_diagnose_servers(&t) ? 100 : busy;
	harness_note_hang();
	add_todos(&t);
	if (busy >= 50)
		text_add(&t, "\n  Likely cause: a loop that never waits: it goes round and round (on "
			 "EAGAIN, say) without ever parking or sleeping, so nothing else runs. The "
			 "backtrace above shows where.");
	else
		text_add(&t, "\n  Likely cause: %s.", current.hint[0] != '\0' ? current.hint :
			 "something waits for a wake-up that never comes");
	const char *fork = getenv("CK_FORK");
	if (fork == NULL || strcmp(fork, "no") != 0)
		fail_here(buf);	/* ends the process; Check kills its servers */
	/* Without fork (under Valgrind), Check cannot take a failure from this
	 * thread: say it, and end the run. */
	cr_write(STDERR_FILENO, buf);
	cr_write(STDERR_FILENO, "\n");
	harness_kill_servers();
	_exit(EXIT_FAILURE);
}

static void *watch(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&dog.lock);
	for (;;) {
		if (dog.deadline == 0) {
			pthread_cond_wait(&dog.changed, &dog.lock);
			continue;
		}
		long long deadline = dog.deadline;
		struct timespec until = { .tv_sec = deadline / 1000, .tv_nsec = deadline % 1000 * 1000000 };
		if (pthread_cond_timedwait(&dog.changed, &dog.lock, &until) == ETIMEDOUT &&
		    dog.deadline == deadline)
			break;
	}
	pthread_mutex_unlock(&dog.lock);
	report_overrun();
}

static void start_watchdog(void)
{
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	int err = pthread_cond_init(&dog.changed, &attr);
	pthread_condattr_destroy(&attr);
	if (err == 0 && sem_init(&dog.captured, 0, 0) < 0)
		err = errno;
	/* The watchdog takes no signal meant for the test's thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_t thread;
	if (err == 0 && (err = pthread_sigmask(SIG_SETMASK, &all, &old)) == 0) {
		err = pthread_create(&thread, NULL, watch, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (err == 0)
		err = pthread_detach(thread);
	if (err != 0) {
		fprintf(stderr, "harness: cannot start the watchdog thread: %s\n", strerror(err));
		exit(EXIT_FAILURE);
	}
	dog.started = true;
}

/* When the test began (its setup), for its deadline. */
static long long test_started;

static int test_deadline_ms(int deadline_s)
{
	return cut_short(th_ms(deadline_s * 1000), th_ms(AFTERMATH_DEADLINE_MS));
}

static void arm_watchdog(int deadline_ms)
{
	if (!dog.started)
		start_watchdog();
	pthread_mutex_lock(&dog.lock);
	dog.test_thread = pthread_self();
	dog.deadline_ms = deadline_ms;
	dog.deadline = deadline_ms > 0 ? test_started + deadline_ms : 0;
	pthread_cond_signal(&dog.changed);
	pthread_mutex_unlock(&dog.lock);
}

int harness_ms_left(void)
{
	pthread_mutex_lock(&dog.lock);
	long long deadline = dog.deadline;
	pthread_mutex_unlock(&dog.lock);
	if (deadline == 0)
		return INT_MAX;
	long long left = deadline - harness_now_ms();
	return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* A test that is failing gets REPORT_S from now to write its report,
 * past its own deadline if need be (Check's timeout is later still). */
static void give_the_report_time(void)
{
	pthread_mutex_lock(&dog.lock);
	if (dog.deadline != 0) {
		dog.deadline = harness_now_ms() + th_ms(REPORT_S * 1000);
		dog.deadline_ms = (int)(dog.deadline - test_started);
		pthread_cond_signal(&dog.changed);
	}
	pthread_mutex_unlock(&dog.lock);
}

static void install_handlers(void)
{
	static bool installed;
	if (installed)
		return;
	installed = true;
	cr_prepare();
	cr_alternate_stack();
	struct sigaction crash = { .sa_sigaction = on_crash,
				   .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND };
	struct sigaction where = { .sa_sigaction = on_where, .sa_flags = SA_SIGINFO | SA_ONSTACK };
	sigfillset(&where.sa_mask);
	for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
		if (sigaction(crash_signals[i], &crash, NULL) < 0)
			perror("harness: sigaction");
	if (sigaction(SIGPWR, &where, NULL) < 0)
		perror("harness: sigaction SIGPWR");
}

/* ---- Suites -------------------------------------------------------------- */

static const char *suite_name = "";

static void setup(void)
{
	harness_kill_servers();	/* a failed test's, when Check does not fork */
	current.name[0] = '\0';
	current.file = NULL;
	current.todos = current.hint = "";
	current.expected_signal = 0;
	harness_aftermath = earlier_hang();
	install_handlers();
	test_started = harness_now_ms();
	arm_watchdog(test_deadline_ms(DEFAULT_DEADLINE_S));
}

static void teardown(void)
{
	arm_watchdog(0);
	harness_stop_servers();
}

static void list_test(TCase *tc, const TTest *test, int signal)
{
	for (int i = 0; i < n_tcases; i++) {
		if (tcases[i].tc != tc)
			continue;
		if (n_listed == MAX_TESTS) {
			fprintf(stderr, "harness: more than %d tests in one suite\n", MAX_TESTS);
			exit(EXIT_FAILURE);
		}
		listed[n_listed++] = (struct listed_test){ test->name, tc, tcases[i].name,
							   tcases[i].todos, signal, tcases[i].deadline_s };
		return;
	}
	fprintf(stderr, "harness: test %s added to a test case not made by th_tcase()\n", test->name);
	exit(EXIT_FAILURE);
}

void th_test(TCase *tc, const TTest *test)
{
	list_test(tc, test, 0);
	tcase_add_test(tc, test);
}

void th_test_raise_signal(TCase *tc, const TTest *test, int signal)
{
	list_test(tc, test, signal);
	tcase_add_test_raise_signal(tc, test, signal);
}

static void set_deadline(struct listed_tcase *tc, int seconds)
{
	tc->deadline_s = seconds;
	for (int i = 0; i < n_listed; i++)
		if (listed[i].tc == tc->tc)
			listed[i].deadline_s = seconds;
	/* CK_TIMEOUT_MULTIPLIER stretches Check's timeout as TH_TIME_SCALE
	 * stretches ours: make memcheck sets both. */
	tcase_set_timeout(tc->tc, seconds + REPORT_MARGIN_S);
}

Suite *th_suite(const char *name)
{
	suite_name = name;
	return suite_create(name);
}

TCase *th_tcase(Suite *suite, const char *name, const char *todos)
{
	if (n_tcases == MAX_TESTS) {
		fprintf(stderr, "harness: more than %d test cases in one suite\n", MAX_TESTS);
		exit(EXIT_FAILURE);
	}
	TCase *tc = tcase_create(name);
	if (todos != NULL && todos[0] != '\0')
		tcase_set_tags(tc, todos);
	tcase_add_checked_fixture(tc, setup, teardown);
	suite_add_tcase(suite, tc);
	struct listed_tcase *listed_tc = &tcases[n_tcases++];
	*listed_tc = (struct listed_tcase){ tc, name, todos != NULL ? todos : "", 0 };
	set_deadline(listed_tc, DEFAULT_DEADLINE_S);
	return tc;
}

void th_tcase_deadline(TCase *tc, int seconds)
{
	for (int i = 0; i < n_tcases; i++)
		if (tcases[i].tc == tc)
			set_deadline(&tcases[i], seconds);
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

/* Does a space-separated list hold this word? */
static bool has_word(const char *list, const char *word)
{
	size_t len = strlen(word);
	for (const char *p = list; (p = strstr(p, word)) != NULL; p += len)
		if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
			return true;
	return false;
}

/* Would Check's CK_RUN_SUITE, CK_RUN_CASE and CK_INCLUDE_TAGS leave any test
 * of this binary to run? (Check itself would print an empty run.) */
static bool anything_selected(void)
{
	const char *only_suite = getenv("CK_RUN_SUITE");
	const char *only_case = getenv("CK_RUN_CASE");
	const char *tags = getenv("CK_INCLUDE_TAGS");
	if (only_suite != NULL && only_suite[0] != '\0' && strcmp(only_suite, suite_name) != 0)
		return false;
	for (int i = 0; i < n_tcases; i++) {
		if (only_case != NULL && only_case[0] != '\0' && strcmp(only_case, tcases[i].name) != 0)
			continue;
		if (tags == NULL || tags[0] == '\0')
			return true;
		char tag[64];
		int len;
		for (const char *p = tcases[i].todos; sscanf(p, " %63s%n", tag, &len) == 1; p += len)
			if (has_word(tags, tag))
				return true;
	}
	return false;
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
	if (!anything_selected()) {
		srunner_free(srunner_create(suite));
		return EXIT_SUCCESS;
	}
	atexit(harness_kill_servers);
	SRunner *runner = srunner_create(suite);
	log_per_binary(runner, "CK_LOG_FILE_NAME", srunner_set_log, log, sizeof log);
	log_per_binary(runner, "CK_TAP_LOG_FILE_NAME", srunner_set_tap, tap, sizeof tap);
	log_per_binary(runner, "CK_XML_LOG_FILE_NAME", srunner_set_xml, xml, sizeof xml);
	srunner_run_all(runner, CK_ENV);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
