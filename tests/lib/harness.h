/* The course's test harness: start a chapter's server binary, talk to it with
 * clients that never wait forever, and fail with messages that teach (what
 * was sent, what was expected, what came back, what happened to the server,
 * and which TODO to look at). Every test has a deadline: one that hangs is
 * stopped and described (where it was, what its coroutines wait on); a crash,
 * of the test or of a server, is shown with its signal and a backtrace.
 *
 * The Makefile tells a test binary what to run through the environment:
 *   TH_SERVER       the echo server binary under test
 *   TH_SHORT_IO     the short-I/O shim (see short_io.c)
 *   TH_CRASH_REPORT the crash reporter preloaded into servers (crash_preload.c)
 *   TH_WRAPPER      a command to run the server under, e.g. Valgrind
 *   TH_SERVER_ARGS  arguments added after every server's own (a mode of
 *                   the server to run the same suites against)
 *   TH_TIME_SCALE   stretch every deadline by this factor (slow tools)
 *   TH_LESSON       the lesson to point a failing student at
 *   TH_CHAPTER      the chapter under test (see promises.h)
 *   TH_HANG_FILE    a file that says an earlier test of this run hung */
#ifndef HARNESS_H
#define HARNESS_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- Suites ------------------------------------------------------------ */

/* The test binary's suite (Check's suite_create()). */
Suite *th_suite(const char *name);

/* A test case named after the TODOs its tests check, tagged with them: the
 * starter check runs just these tests after cutting one TODO out, and some
 * must fail. todos is a space-separated list, or "" or NULL for none. Each of
 * its tests must end within 3 s (stretched by TH_TIME_SCALE), or it is
 * reported as hung. */
TCase *th_tcase(Suite *suite, const char *name, const char *todos);

/* Give the tests of a test case more time than 3 s each. */
void th_tcase_deadline(TCase *tc, int seconds);

/* Add a test to a test case (Check's tcase_add_test), or one that passes only
 * if it ends by the signal. The harness keeps the list, for th_run(). */
void th_test(TCase *tc, const TTest *test);
void th_test_raise_signal(TCase *tc, const TTest *test, int signal);

/* Run the suite (Check's CK_* environment variables apply, including its TAP
 * and XML logs, where a %s in the file name becomes the test binary's name);
 * the exit status for main(). With TH_LIST_TESTS set, it runs nothing and
 * prints a line per test instead, "TEST<tab>TEST CASE<tab>TODOS", the TODOs
 * its test case is tagged with (tools/todo-tests.sh reads these). A binary
 * with nothing that CK_RUN_SUITE, CK_RUN_CASE or CK_INCLUDE_TAGS selects
 * runs nothing and prints nothing. */
int th_run(Suite *suite);

/* Say, first thing in a test, which TODOs it checks and the most likely
 * cause when its own checks fail. Every failure names the TODOs; the likely
 * cause follows what happened: a crash, a server that exited or hung, or,
 * when the server answered wrongly, this one. Failures are reported at this
 * line of the test. */
#define th_about(todos, likely_cause) \
	th_about_test(__FILE__, __LINE__, __func__, (todos), (likely_cause))
void th_about_test(const char *file, int line, const char *function, const char *todos,
		   const char *likely_cause);

/* Fail the test with a formatted message plus what happened to the servers,
 * the TODOs and the likely cause. */
_Noreturn void th_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A deadline of ms milliseconds, stretched by TH_TIME_SCALE. */
int th_ms(int ms);

/* Sleep for ms milliseconds (not stretched), through signals. */
void th_sleep_ms(int ms);

/* ---- Servers ----------------------------------------------------------- */

struct th_server {
	pid_t pid;
	char host[64];           /* as printed in "listening on HOST:PORT" */
	char port[8];
	int stdout_fd;           /* the rest of the server's stdout */
	char stderr_path[128];   /* its stderr, kept in a file for messages */
	bool reports_crashes;    /* the crash reporter is loaded into it */
};

struct th_launch {
	const char *const *args; /* extra arguments, NULL-terminated, or NULL */
	bool short_io;           /* run under the short-I/O shim */
	int fd_limit;            /* lower its RLIMIT_NOFILE to this once it runs */
	const char *server;      /* another binary to run instead of TH_SERVER
	                          * (see th_build_path), or NULL */
	const char *preload;     /* a library to LD_PRELOAD, ahead of the
	                          * short-I/O shim when both are asked for */
};

/* Start the server under test with -p 0 and wait for its listening line.
 * Stopped and checked by the test case's teardown. */
struct th_server *th_start(const struct th_launch *launch);

/* Run the server under test with just args (NULL-terminated), through
 * TH_WRAPPER as th_start() does, and wait for it to end: for tests of its
 * command line. Returns its exit status (128 + the signal, if one killed it),
 * with the start of its output (stdout and stderr) in err; fails the test if
 * it does not end. */
int th_run_server(const char *const *args, char *err, size_t err_size);

/* Run launch->server (or TH_SERVER) with launch->args and launch->preload,
 * through TH_WRAPPER, and wait for it to end, for at most timeout_ms
 * (stretched by TH_TIME_SCALE); its stdout and stderr, together, go to out.
 * Returns its exit status (128 + the signal, if one killed it), or -1 if it
 * was still running at the deadline (it is killed then): for programs that
 * should end, and for showing that one hangs. */
int th_run_program(const struct th_launch *launch, int timeout_ms, char *out, size_t out_size);

/* The path of another file the build put next to TH_SERVER (a library, a
 * second program). Valid until the test ends. */
const char *th_build_path(const char *name);

/* Stop it with SIGTERM; fail unless it exits with status 0 (a crash, a
 * Valgrind or sanitizer error, a hang are all failures; one that has not
 * exited after 3 s is described, then killed). Its stderr stays readable
 * until the test ends. */
void th_stop(struct th_server *server);

/* CPU time the server has used so far (user + system), and its resident
 * memory now, from /proc/PID/stat and /proc/PID/status. */
long th_server_cpu_ms(const struct th_server *server);
long th_server_rss_kib(const struct th_server *server);

/* The server's stderr so far (a static buffer, the last 2 KiB at most). */
const char *th_server_stderr(const struct th_server *server);

/* Wait up to ms milliseconds (stretched by TH_TIME_SCALE) for text to show
 * in the server's stderr; false if it did not. */
bool th_stderr_shows(const struct th_server *server, const char *text, int ms);

/* The kernel threads of process pid (a server's, or getpid()) that are the
 * program's own: the entries of /proc/PID/task, less the threads of the
 * emulator the tests run under, if any (TH_RUNNER_THREADS: qemu-user adds
 * one). Fails the test if the process is gone. */
int th_kernel_threads(pid_t pid);

/* A test's own guard gave up on something that never came (a lost wake-up,
 * a coroutine that never ran): count it as a hang, so that the chapter's
 * later tests give up sooner, as after a hang the harness saw itself. */
void th_note_hang(void);

/* The threads the emulator adds to every process (TH_RUNNER_THREADS; 0
 * when the tests run natively), for counts a program makes of itself. */
int th_runner_threads(void);

/* ---- Clients ----------------------------------------------------------- */

/* Connect to the server; fails the test if that does not work in time. The
 * socket is non-blocking: every wait in this harness has a deadline. */
int th_connect(const struct th_server *server);

/* The same with a receive buffer of rcvbuf bytes (SO_RCVBUF; 0: the
 * default): a client that can hold little of the server's reply. */
int th_connect_small_window(const struct th_server *server, int rcvbuf);

/* The client's own address, as the server sees it, in common/addr.h's form
 * ("127.0.0.1:54321", "[::1]:54321"): what a server's log names it by. */
void th_client_address(int fd, char *text, size_t size);

/* A connected pair of non-blocking local sockets, for tests that run
 * coroutines in the test process. */
void th_socket_pair(int fds[2]);

/* Close a client; th_reset() closes it with an RST instead of a FIN. */
void th_close(int fd);
void th_reset(int fd);

/* One conversation: send everything (in chunks, if chunk > 0) while reading
 * the replies at the same time, so that neither side's buffers fill up and
 * deadlock, until `want` bytes came back, the server closed, or the deadline. */
struct th_exchange {
	const void *send;
	size_t send_len;
	size_t chunk;            /* bytes per send() call; 0 for as many as fit */
	bool shut_wr;            /* half-close after sending everything */
	size_t want;             /* stop once this many bytes came back */
	bool until_eof;          /* ...or keep reading until the server closes */
	int pause_ms;            /* wait this long after each send() (trickling) */
	int timeout_ms;          /* 0 for the default */
	const void *expect;      /* what should come back, if known: the
				  * conversation ends at the first byte that
				  * differs, instead of waiting for more */
};

struct th_reply {
	unsigned char *data;     /* malloc'd, th_reply_free() */
	size_t len;
	size_t sent;             /* bytes actually sent */
	bool eof;                /* the server closed its side */
	bool reset;              /* ...with an RST (ECONNRESET) */
	bool timed_out;          /* nothing more came... */
	int waited_ms;           /* ...for this long */
	bool cut_short;          /* ...before the deadline, after an earlier hang */
};

void th_exchange(int fd, const struct th_exchange *ex, struct th_reply *reply);

/* n conversations at once, ex[i] on fds[i], each with its own deadline. */
void th_exchange_many(const int *fds, const struct th_exchange *ex,
		      struct th_reply *replies, size_t n);
void th_reply_free(struct th_reply *reply);

/* Send up to max bytes without reading any reply, until the buffers between
 * us and the server are full (nothing more goes out for 200 ms): the server
 * is then stuck writing its echo to us. Returns the bytes sent. */
size_t th_send_without_reading(int fd, size_t max);

/* Send msg and expect exactly its echo back (letters uppercased). */
void th_expect_echo(int fd, const void *msg, size_t len);

/* Expect no reply bytes for ms milliseconds; `why` explains the expectation. */
void th_expect_silence(int fd, int ms, const char *why);

/* Expect the server to close the connection, sending nothing more. */
void th_expect_eof(int fd);

/* ---- Payloads and checks ----------------------------------------------- */

/* What the protocol answers to in: a..z uppercased, every other byte as is. */
void th_uppercase(const void *in, void *out, size_t len);

/* len bytes: the 256 byte values in order, then a pseudo-random pattern
 * that depends on seed. malloc'd. */
unsigned char *th_payload(size_t len, unsigned seed);

/* Fail unless reply == uppercase(sent); the message shows where they part. */
void th_check_echo(const void *sent, size_t sent_len, const struct th_reply *reply);

/* A trace, for tests of coroutines and threads: each notes what it does, in
 * the order it happens, and the test compares the whole after they ran. */
void th_trace_start(void);
void th_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The trace so far. */
const char *th_trace(void);
/* Fail unless the trace is exactly expected; `what` names the scenario. */
void th_expect_trace(const char *expected, const char *what);

/* For tests with many clients: raise this process's descriptor limit to its
 * hard limit (the server, started afterwards, inherits it) and return how
 * many clients up to wanted that leaves room for, saying so on stderr when
 * it is fewer. Each connection is a descriptor here and one in the server. */
long th_raise_fd_limit(long wanted);

/* Many clients at once: connect `clients` of them to server, all open before
 * any sends, have each send data (len bytes, chunk bytes per send(); 0 for
 * as many as fit) and check that each gets its own echo back within
 * timeout_ms (0 for the default), then close them all. */
void th_echo_many(struct th_server *server, size_t clients, const void *data, size_t len,
		  size_t chunk, int timeout_ms);

#endif
