/*
 * loadgen.c: a load generator for the course's uppercasing echo servers.
 * One thread and one epoll set drive N TCP connections; each sends a message,
 * checks every byte of the reply and times the round trip, over and over.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "histogram.h"

#define STRINGIFY(x) STRINGIFY_(x)
#define STRINGIFY_(x) #x

#define NS_PER_MS  1000000ull
#define NS_PER_SEC 1000000000ull

#define MAX_CONNS   1000000
#define MAX_SIZE    (1024 * 1024)
#define MAX_RATE    100000
#define MAX_SECONDS 1e6

#define MAX_CONNECTING     256 /* connects in flight at once */
#define CONNECT_TIMEOUT_S  5   /* long enough for two SYN retransmits */
#define VERIFY_TIMEOUT_S   10  /* idle mode: wait this long for first replies */
#define FD_MARGIN          16  /* stdio, the epoll set, and some slack */
#define TICK_MS            100 /* every deadline we keep is coarser than this */
#define MAX_EVENTS         1024
#define MAX_REPORTS        5   /* messages of each kind before we go quiet */
#define SCRATCH_SIZE       (64 * 1024)
#define PATTERN_SHIFTS     4096
#define PORT_RANGE_FILE    "/proc/sys/net/ipv4/ip_local_port_range"

static const char usage_line[] =
	"usage: loadgen [-H HOST] [-p PORT] [-n CONNS] [-d SECONDS] [-s SIZE] [-r RATE] [-i] [-q]\n"
	"               [-P PID]\n";

static const char help_text[] =
	"  -H HOST     server address, an IPv4 literal (default 127.0.0.1)\n"
	"  -p PORT     server port (default 8000)\n"
	"  -n CONNS    connections to open (default 100)\n"
	"  -d SECONDS  how long to run once every connection is open; fractions\n"
	"              allowed (default 5)\n"
	"  -s SIZE     bytes per message, 1 .. 1048576 (default 64)\n"
	"  -r RATE     connections started per millisecond while opening (default 8);\n"
	"              never more than " STRINGIFY(MAX_CONNECTING) " connects in flight\n"
	"  -i          idle mode: one checked round trip on each connection, then\n"
	"              hold them all open and silent for SECONDS\n"
	"  -q          quiet: no progress line\n"
	"  -P PID      the server's process: report the CPU time it used during the\n"
	"              SECONDS window (its CPU clock, clock_getcpuclockid(3))\n"
	"The last line on stdout sums the run up:\n"
	"  RESULT conns= connected= served= connect_failures= errors= wrong_bytes=\n"
	"         rounds= seconds= rps= mbps= p50_us= p99_us= p999_us= [idle_open=]\n"
	"         [server_cpu_s=] all_rounds=\n"
	"served counts connections that got at least one correct reply; rounds,\n"
	"rps, mbps (bytes both ways) and latencies cover the SECONDS window, or in\n"
	"idle mode the checking rounds, timed over the opening. all_rounds counts every\n"
	"verified round, the opening included, to check against the server's own count.\n"
	"Exit status: 0 clean run; 1 loadgen itself failed; 2 usage error;\n"
	"             3 the run saw connect failures, connection errors or wrong bytes.\n";

struct options {
	struct in_addr host;
	uint16_t port;
	unsigned conns;
	double seconds;
	size_t size;
	unsigned rate;
	bool idle;
	bool quiet;
	pid_t server;     /* -P: whose CPU time to measure, 0 for none */
};

enum conn_state {
	CONN_UNUSED,     /* not attempted yet */
	CONN_CONNECTING,
	CONN_ROUND,      /* a message is going out, its reply coming back */
	CONN_HOLDING,    /* idle mode: verified, now silent */
	CONN_CLOSED,
	CONN_STATES
};

struct conn {
	int fd;
	enum conn_state state;
	uint32_t round;    /* rounds begun; also picks the round's message */
	size_t sent;       /* bytes of the message written so far */
	size_t received;   /* bytes of the reply read and checked so far */
	uint64_t began_ns; /* when the connect or the round began */
	bool served;       /* has had one complete, correct reply */
};

enum phase {
	PHASE_OPENING, /* ramping up; in idle mode also the verifying round */
	PHASE_RUNNING, /* the measured window; in idle mode the silent hold */
	PHASE_DONE
};

struct loadgen {
	struct options opt;
	char server_name[INET_ADDRSTRLEN + 8];
	unsigned sources;   /* source addresses to bind to, 0: kernel's choice */
	int epoll_fd;
	struct conn *conns;
	unsigned in_state[CONN_STATES];
	unsigned started;           /* conns[0 .. started-1] have been attempted */
	unsigned oldest_connecting; /* no connect below this index is in flight */

	unsigned char *message;     /* every message is a slice of this */
	unsigned char *reply;       /* the same, uppercased */
	unsigned char *scratch;     /* where replies are read before checking */

	enum phase phase;
	uint64_t opening_ns, running_ns, done_ns; /* when each phase began */
	uint64_t verify_deadline_ns;
	clockid_t server_clock;                   /* -P: the server's CPU clock */
	uint64_t server_cpu_begin_ns, server_cpu_end_ns;

	unsigned connected, served, connect_failures, errors;
	uint64_t wrong_bytes, rounds;
	uint64_t all_rounds;    /* verified rounds, opening included: for cross-checks */
	struct hist latency;

	unsigned connect_reports, error_reports, wrong_reports;
	bool show_progress;
	int progress_len; /* characters of status line now on the terminal */
	uint64_t next_progress_ns;
};

static int fail(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	return -1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	/* cannot fail for CLOCK_MONOTONIC; if it did, no figure we print would mean anything */
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0) {
		fail("clock_gettime");
		exit(1);
	}
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- command line ---- */

static bool parse_number(const char *text, unsigned long min, unsigned long max,
			 unsigned long *value)
{
	char *end;

	errno = 0;
	*value = strtoul(text, &end, 10);
	return errno == 0 && end != text && *end == '\0' && text[0] != '-' &&
	       *value >= min && *value <= max;
}

static bool parse_seconds(const char *text, double *seconds)
{
	char *end;

	errno = 0;
	*seconds = strtod(text, &end);
	/* written this way round so that NaN fails too */
	return errno == 0 && end != text && *end == '\0' &&
	       *seconds > 0 && *seconds <= MAX_SECONDS;
}

static bool parse_option(int option, const char *arg, struct options *opt)
{
	unsigned long n;

	switch (option) {
	case 'H':
		return inet_pton(AF_INET, arg, &opt->host) == 1;
	case 'p':
		if (!parse_number(arg, 1, 65535, &n))
			return false;
		opt->port = (uint16_t)n;
		return true;
	case 'n':
		if (!parse_number(arg, 1, MAX_CONNS, &n))
			return false;
		opt->conns = (unsigned)n;
		return true;
	case 'd':
		return parse_seconds(arg, &opt->seconds);
	case 's':
		if (!parse_number(arg, 1, MAX_SIZE, &n))
			return false;
		opt->size = n;
		return true;
	case 'r':
		if (!parse_number(arg, 1, MAX_RATE, &n))
			return false;
		opt->rate = (unsigned)n;
		return true;
	case 'i':
		opt->idle = true;
		return true;
	case 'q':
		opt->quiet = true;
		return true;
	case 'P':
		if (!parse_number(arg, 1, INT_MAX, &n))
			return false;
		opt->server = (pid_t)n;
		return true;
	default:
		return false;
	}
}

static bool parse_options(int argc, char **argv, struct options *opt)
{
	*opt = (struct options){
		.host.s_addr = htonl(INADDR_LOOPBACK),
		.port = 8000,
		.conns = 100,
		.seconds = 5,
		.size = 64,
		.rate = 8,
	};

	int option;
	while ((option = getopt(argc, argv, "H:p:n:d:s:r:iqP:h")) != -1) {
		if (option == 'h') {
			fputs(usage_line, stdout);
			fputs(help_text, stdout);
			exit(0);
		}
		if (!parse_option(option, optarg, opt)) {
			if (option != '?')
				fprintf(stderr, "loadgen: bad value for -%c: %s\n", option, optarg);
			return false;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "loadgen: unexpected argument: %s\n", argv[optind]);
		return false;
	}
	return true;
}

/* ---- messages on stderr ---- */

static void clear_progress(struct loadgen *lg)
{
	if (lg->progress_len == 0)
		return;
	fprintf(stderr, "\r%*s\r", lg->progress_len, "");
	lg->progress_len = 0;
}

static const char *phase_name(const struct loadgen *lg)
{
	if (lg->phase == PHASE_OPENING)
		return "opening";
	return lg->opt.idle ? "holding" : "running";
}

static void show_progress(struct loadgen *lg, uint64_t now)
{
	if (!lg->show_progress || now < lg->next_progress_ns)
		return;
	lg->next_progress_ns = now + NS_PER_SEC;
	int len = fprintf(stderr, "\rloadgen: %s  %u/%u connected  %" PRIu64 " rounds  %u errors ",
			  phase_name(lg), lg->connected, lg->opt.conns, lg->rounds, lg->errors);
	if (len > 1)
		lg->progress_len = len - 1;
}

static void report(struct loadgen *lg, unsigned *shown, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A broken server tends to fail ten thousand connections the same way: the
 * first few messages of each kind say it all, and the counts say the rest. */
static void report(struct loadgen *lg, unsigned *shown, const char *fmt, ...)
{
	va_list ap;

	if (*shown > MAX_REPORTS)
		return;
	clear_progress(lg);
	++*shown;
	if (*shown > MAX_REPORTS) {
		fputs("loadgen: (more like that, not shown)\n", stderr);
		return;
	}
	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- connection bookkeeping ---- */

static unsigned conn_index(const struct loadgen *lg, const struct conn *c)
{
	return (unsigned)(c - lg->conns);
}

static void set_state(struct loadgen *lg, struct conn *c, enum conn_state state)
{
	lg->in_state[c->state]--;
	lg->in_state[state]++;
	c->state = state;
}

static void close_conn(struct loadgen *lg, struct conn *c)
{
	if (c->fd >= 0 && close(c->fd) < 0)
		report(lg, &lg->error_reports, "connection %u: close: %s",
		       conn_index(lg, c), strerror(errno));
	c->fd = -1;
	set_state(lg, c, CONN_CLOSED);
}

static void fail_connect(struct loadgen *lg, struct conn *c, const char *what, int err)
{
	report(lg, &lg->connect_reports, "connection %u to %s: %s: %s",
	       conn_index(lg, c), lg->server_name, what, strerror(err));
	lg->connect_failures++;
	close_conn(lg, c);
}

/* err is an errno value, or 0 when `what` says it all */
static void fail_conn(struct loadgen *lg, struct conn *c, const char *what, int err)
{
	report(lg, &lg->error_reports, "connection %u: %s%s%s", conn_index(lg, c),
	       what, err ? ": " : "", err ? strerror(err) : "");
	lg->errors++;
	close_conn(lg, c);
}

/* ---- the message pattern ---- */

static uint32_t next_random(uint32_t *state)
{
	/* xorshift32: a fixed seed gives the same pattern on every run */
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

/*
 * Half the bytes are lowercase, so a server that forgets to uppercase fails
 * at once.  The rest must come back untouched, and each is there to catch
 * a particular slip: uppercase letters and digits, bytes >= 0x80 (a
 * locale-aware toupper()), NUL (string functions), and the neighbours of
 * the letter ranges, '@' '[' '`' '{' (off-by-one range checks).
 */
static unsigned char pattern_byte(size_t offset, uint32_t random)
{
	switch (offset % 8) {
	case 1:
		return (unsigned char)('A' + random % 26);
	case 3:
		return (unsigned char)('0' + random % 10);
	case 5:
		return (unsigned char)(0x80 | random);
	case 7:
		return (unsigned char)"\0@[`{"[random % 5];
	default:
		return (unsigned char)('a' + random % 26);
	}
}

/* The protocol, spelled out: toupper() would depend on the locale. */
static unsigned char uppercase(unsigned char byte)
{
	return byte >= 'a' && byte <= 'z' ? (unsigned char)(byte - 'a' + 'A') : byte;
}

static void fill_pattern(struct loadgen *lg)
{
	uint32_t state = 2463534242u;

	for (size_t i = 0; i < lg->opt.size + PATTERN_SHIFTS; i++) {
		lg->message[i] = pattern_byte(i, next_random(&state));
		lg->reply[i] = uppercase(lg->message[i]);
	}
}

/* Rounds shift by one byte, so a stale reply shows up as wrong; connections
 * start far apart, so a reply sent down the wrong connection does too. */
static size_t pattern_offset(const struct loadgen *lg, const struct conn *c)
{
	return ((size_t)conn_index(lg, c) * 97 + c->round) % PATTERN_SHIFTS;
}

/* ---- one connection's life ---- */

static void start_round(struct loadgen *lg, struct conn *c);

static bool bind_source(struct loadgen *lg, struct conn *c)
{
	int on = 1;
	struct sockaddr_in source = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK + conn_index(lg, c) % lg->sources),
	};

	/* without this, bind() would pick a port before it knows the peer and
	 * so run out after one port range, which is what we are avoiding */
	if (setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on) < 0) {
		fail_connect(lg, c, "setsockopt(IP_BIND_ADDRESS_NO_PORT)", errno);
		return false;
	}
	if (bind(c->fd, (struct sockaddr *)&source, sizeof source) < 0) {
		char name[INET_ADDRSTRLEN];
		char what[INET_ADDRSTRLEN + 16];

		inet_ntop(AF_INET, &source.sin_addr, name, sizeof name);
		snprintf(what, sizeof what, "bind to %s", name);
		fail_connect(lg, c, what, errno);
		return false;
	}
	return true;
}

/*
 * Sockets are edge-triggered and registered once, for input and output
 * together, so a round never costs an epoll_ctl().  The price is that every
 * handler must go on until the kernel says EAGAIN, or it may never hear
 * about that socket again.  Even a connect that succeeds at once is finished
 * by the EPOLLOUT that registering a writable socket reports.
 */
static void start_connect(struct loadgen *lg, struct conn *c, uint64_t now)
{
	struct sockaddr_in server = {
		.sin_family = AF_INET,
		.sin_port = htons(lg->opt.port),
		.sin_addr = lg->opt.host,
	};
	struct epoll_event event = {
		.events = EPOLLIN | EPOLLOUT | EPOLLET,
		.data.u32 = conn_index(lg, c),
	};

	c->began_ns = now;
	set_state(lg, c, CONN_CONNECTING);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fail_connect(lg, c, "socket", errno);
		return;
	}
	if (lg->sources > 0 && !bind_source(lg, c))
		return;
	if (connect(c->fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
		fail_connect(lg, c, "connect", errno);
		return;
	}
	if (epoll_ctl(lg->epoll_fd, EPOLL_CTL_ADD, c->fd, &event) < 0)
		fail_connect(lg, c, "epoll_ctl", errno);
}

static void finish_connect(struct loadgen *lg, struct conn *c)
{
	int err;
	socklen_t len = sizeof err;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
		fail_connect(lg, c, "getsockopt(SO_ERROR)", errno);
		return;
	}
	if (err != 0) {
		fail_connect(lg, c, "connect", err);
		return;
	}
	lg->connected++;
	start_round(lg, c);
}

/* Returns false if the connection had to be closed. */
static bool send_message(struct loadgen *lg, struct conn *c)
{
	const unsigned char *message = lg->message + pattern_offset(lg, c);

	while (c->sent < lg->opt.size) {
		/* MSG_NOSIGNAL: a server that hangs up must not kill us with SIGPIPE */
		ssize_t n = send(c->fd, message + c->sent, lg->opt.size - c->sent, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			fail_conn(lg, c, "send", errno);
			return false;
		}
		c->sent += (size_t)n;
	}
	return true;
}

static void start_round(struct loadgen *lg, struct conn *c)
{
	c->round++;
	c->sent = 0;
	c->received = 0;
	c->began_ns = now_ns();
	set_state(lg, c, CONN_ROUND);
	send_message(lg, c);
}

/* Does the reply chunk just read into scratch match?  Counts what does not. */
static bool check_reply(struct loadgen *lg, struct conn *c, size_t len)
{
	const unsigned char *expected = lg->reply + pattern_offset(lg, c) + c->received;

	if (memcmp(lg->scratch, expected, len) == 0)
		return true;
	for (size_t i = 0; i < len; i++) {
		if (lg->scratch[i] == expected[i])
			continue;
		lg->wrong_bytes++;
		report(lg, &lg->wrong_reports, "WRONG BYTE: connection %u, round %" PRIu32
		       ", offset %zu: expected 0x%02x, got 0x%02x", conn_index(lg, c), c->round,
		       c->received + i, expected[i], lg->scratch[i]);
	}
	return false;
}

static bool counting_rounds(const struct loadgen *lg)
{
	return lg->phase == (lg->opt.idle ? PHASE_OPENING : PHASE_RUNNING);
}

static void finish_round(struct loadgen *lg, struct conn *c)
{
	if (!c->served) {
		c->served = true;
		lg->served++;
	}
	lg->all_rounds++;
	if (counting_rounds(lg)) {
		lg->rounds++;
		hist_record(&lg->latency, now_ns() - c->began_ns);
	}
	if (lg->opt.idle) {
		set_state(lg, c, CONN_HOLDING);
		return;
	}
	start_round(lg, c);
}

/*
 * Reads until EAGAIN or until the reply is complete, whichever comes first.
 * Stopping at a complete reply is safe even though we are edge-triggered:
 * the next reply can only arrive after the next message goes out, and its
 * arrival is a fresh edge.
 */
static void receive_reply(struct loadgen *lg, struct conn *c)
{
	while (c->received < lg->opt.size) {
		size_t want = lg->opt.size - c->received;
		ssize_t n = recv(c->fd, lg->scratch, want < SCRATCH_SIZE ? want : SCRATCH_SIZE, 0);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fail_conn(lg, c, "recv", errno);
			return;
		}
		if (n == 0) {
			fail_conn(lg, c, "closed by the server before the reply was complete", 0);
			return;
		}
		if (!check_reply(lg, c, (size_t)n)) {
			fail_conn(lg, c, "wrong reply", 0);
			return;
		}
		c->received += (size_t)n;
	}
	finish_round(lg, c);
}

/* An idle connection should hear nothing; an event on it is either a late
 * EPOLLOUT edge (harmless) or the server breaking the silence. */
static void check_silence(struct loadgen *lg, struct conn *c)
{
	ssize_t n = recv(c->fd, lg->scratch, SCRATCH_SIZE, 0);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n < 0) {
		fail_conn(lg, c, "recv while idle", errno);
		return;
	}
	if (n == 0) {
		fail_conn(lg, c, "closed by the server while idle", 0);
		return;
	}
	lg->wrong_bytes += (uint64_t)n;
	fail_conn(lg, c, "the server sent bytes on an idle connection", 0);
}

static void handle_event(struct loadgen *lg, struct conn *c)
{
	switch (c->state) {
	case CONN_CONNECTING:
		finish_connect(lg, c);
		return;
	case CONN_ROUND:
		if (send_message(lg, c))
			receive_reply(lg, c);
		return;
	case CONN_HOLDING:
		check_silence(lg, c);
		return;
	default:
		return; /* closed earlier in this same batch of events */
	}
}

/* ---- the run ---- */

static void start_connects(struct loadgen *lg, uint64_t now)
{
	uint64_t allowed = ((now - lg->opening_ns) / NS_PER_MS + 1) * lg->opt.rate;

	while (lg->started < lg->opt.conns && lg->started < allowed &&
	       lg->in_state[CONN_CONNECTING] < MAX_CONNECTING) {
		start_connect(lg, &lg->conns[lg->started], now);
		lg->started++;
	}
}

/* Connects start in index order and share one timeout, so the oldest one
 * still in flight is the first to expire. */
static void expire_connects(struct loadgen *lg, uint64_t now)
{
	while (lg->oldest_connecting < lg->started) {
		struct conn *c = &lg->conns[lg->oldest_connecting];

		if (c->state == CONN_CONNECTING) {
			if (now - c->began_ns < CONNECT_TIMEOUT_S * NS_PER_SEC)
				return;
			fail_connect(lg, c, "no answer within " STRINGIFY(CONNECT_TIMEOUT_S) " s",
				     ETIMEDOUT);
		}
		lg->oldest_connecting++;
	}
}

static void fail_unverified(struct loadgen *lg)
{
	for (unsigned i = 0; i < lg->opt.conns; i++) {
		if (lg->conns[i].state == CONN_ROUND)
			fail_conn(lg, &lg->conns[i],
				  "no reply within " STRINGIFY(VERIFY_TIMEOUT_S) " s", 0);
	}
}

/* Opening ends once every connect has succeeded or failed; in idle mode
 * the verifying rounds must be over too, but we wait for them only so long. */
static bool opening_over(struct loadgen *lg, uint64_t now)
{
	if (lg->started < lg->opt.conns || lg->in_state[CONN_CONNECTING] > 0)
		return false;
	if (!lg->opt.idle || lg->in_state[CONN_ROUND] == 0)
		return true;
	if (lg->verify_deadline_ns == 0)
		lg->verify_deadline_ns = now + VERIFY_TIMEOUT_S * NS_PER_SEC;
	if (now < lg->verify_deadline_ns)
		return false;
	fail_unverified(lg);
	return true;
}

static uint64_t duration_ns(const struct loadgen *lg)
{
	return (uint64_t)(lg->opt.seconds * NS_PER_SEC);
}

/* The server's CPU time so far (-P), in nanoseconds; 0 without -P. */
static uint64_t server_cpu_ns(const struct loadgen *lg)
{
	if (lg->opt.server == 0)
		return 0;
	struct timespec ts;
	if (clock_gettime(lg->server_clock, &ts) < 0) {
		fail("clock_gettime(the server's CPU clock)");
		exit(1);
	}
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void update_phase(struct loadgen *lg, uint64_t now)
{
	if (lg->phase == PHASE_OPENING && opening_over(lg, now)) {
		lg->phase = PHASE_RUNNING;
		lg->running_ns = now;
		lg->server_cpu_begin_ns = server_cpu_ns(lg);
	}
	if (lg->phase == PHASE_RUNNING && now - lg->running_ns >= duration_ns(lg)) {
		lg->phase = PHASE_DONE;
		lg->done_ns = now;
		lg->server_cpu_end_ns = server_cpu_ns(lg);
	}
}

static int wait_timeout_ms(const struct loadgen *lg, uint64_t now)
{
	if (lg->phase == PHASE_OPENING && lg->started < lg->opt.conns)
		return 1; /* the ramp is paced in milliseconds */
	if (lg->phase == PHASE_RUNNING) {
		uint64_t left_ms = (lg->running_ns + duration_ns(lg) - now + NS_PER_MS - 1) / NS_PER_MS;
		if (left_ms < TICK_MS)
			return (int)left_ms;
	}
	return TICK_MS;
}

static int run(struct loadgen *lg)
{
	struct epoll_event events[MAX_EVENTS];

	lg->opening_ns = now_ns();
	lg->next_progress_ns = lg->opening_ns + NS_PER_SEC;
	for (;;) {
		uint64_t now = now_ns();

		start_connects(lg, now);
		expire_connects(lg, now);
		update_phase(lg, now);
		if (lg->phase == PHASE_DONE)
			break;
		show_progress(lg, now);

		int n = epoll_wait(lg->epoll_fd, events, MAX_EVENTS, wait_timeout_ms(lg, now));
		if (n < 0 && errno == EINTR)
			continue; /* e.g. stopped with ^Z and continued */
		if (n < 0)
			return fail("epoll_wait");
		for (int i = 0; i < n; i++)
			handle_event(lg, &lg->conns[events[i].data.u32]);
	}
	clear_progress(lg);
	return 0;
}

/* ---- setting up and tearing down ---- */

/* Each connection is a file descriptor; the soft limit is often 1024. */
static int fit_fd_limit(struct options *opt)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) < 0)
		return fail("getrlimit(RLIMIT_NOFILE)");

	rlim_t wanted = (rlim_t)opt->conns + FD_MARGIN;
	if (limit.rlim_max != RLIM_INFINITY && wanted > limit.rlim_max) {
		if (limit.rlim_max <= FD_MARGIN) {
			fprintf(stderr, "loadgen: RLIMIT_NOFILE hard limit is %llu: no room for connections\n",
				(unsigned long long)limit.rlim_max);
			return -1;
		}
		opt->conns = (unsigned)(limit.rlim_max - FD_MARGIN);
		fprintf(stderr, "loadgen: can open only %u connections: RLIMIT_NOFILE hard limit is %llu\n",
			opt->conns, (unsigned long long)limit.rlim_max);
		wanted = limit.rlim_max;
	}
	if (limit.rlim_cur >= wanted) /* RLIM_INFINITY is the largest value */
		return 0;
	limit.rlim_cur = wanted;
	if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
		return fail("setrlimit(RLIMIT_NOFILE)");
	return 0;
}

/* How many local ports connect() may choose from; -1 on failure. */
static long port_range_size(void)
{
	unsigned low, high;
	FILE *file = fopen(PORT_RANGE_FILE, "r");

	if (file == NULL)
		return fail(PORT_RANGE_FILE);
	int fields = fscanf(file, "%u %u", &low, &high);
	if (fclose(file) == EOF)
		return fail(PORT_RANGE_FILE);
	if (fields != 2 || low > high) {
		fprintf(stderr, "loadgen: %s: expected two port numbers\n", PORT_RANGE_FILE);
		return -1;
	}
	return (long)high - low + 1;
}

/*
 * Every connection from one source address to one server needs its own
 * local port.  A quarter of the range is left for other programs and for
 * ports still in TIME_WAIT from an earlier run.  The whole of 127.0.0.0/8
 * reaches a loopback server, so past that we spread over more addresses.
 */
static int plan_sources(struct loadgen *lg)
{
	long range = port_range_size();

	if (range < 0)
		return -1;
	unsigned ports = (unsigned)range;
	unsigned per_source = ports - ports / 4;
	if (lg->opt.conns <= per_source)
		return 0;
	if ((ntohl(lg->opt.host.s_addr) >> 24) != 127) {
		fprintf(stderr, "loadgen: note: %u connections may not fit in the %u local ports "
			"of one source address\n", lg->opt.conns, ports);
		return 0;
	}

	lg->sources = (lg->opt.conns + per_source - 1) / per_source;
	struct in_addr last = { .s_addr = htonl(INADDR_LOOPBACK + lg->sources - 1) };
	char name[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &last, name, sizeof name);
	fprintf(stderr, "loadgen: note: %u connections are more than the %u local ports we use "
		"per source address: binding to 127.0.0.1 .. %s\n", lg->opt.conns, per_source, name);
	return 0;
}

static int setup(struct loadgen *lg)
{
	char host[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &lg->opt.host, host, sizeof host);
	snprintf(lg->server_name, sizeof lg->server_name, "%s:%u", host, lg->opt.port);
	hist_init(&lg->latency);
	lg->show_progress = !lg->opt.quiet && isatty(STDERR_FILENO);

	if (fit_fd_limit(&lg->opt) < 0 || plan_sources(lg) < 0)
		return -1;

	lg->conns = calloc(lg->opt.conns, sizeof *lg->conns);
	lg->message = malloc(lg->opt.size + PATTERN_SHIFTS);
	lg->reply = malloc(lg->opt.size + PATTERN_SHIFTS);
	lg->scratch = malloc(SCRATCH_SIZE);
	if (!lg->conns || !lg->message || !lg->reply || !lg->scratch)
		return fail("malloc");
	for (unsigned i = 0; i < lg->opt.conns; i++)
		lg->conns[i].fd = -1;
	lg->in_state[CONN_UNUSED] = lg->opt.conns;
	fill_pattern(lg);

	lg->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (lg->epoll_fd < 0)
		return fail("epoll_create1");
	if (lg->opt.server != 0) {
		int err = clock_getcpuclockid(lg->opt.server, &lg->server_clock);
		if (err != 0) {
			errno = err;
			return fail("clock_getcpuclockid(-P)");
		}
	}
	return 0;
}

static void close_all(struct loadgen *lg)
{
	if (lg->conns == NULL)
		return; /* setup failed before they existed */
	for (unsigned i = 0; i < lg->opt.conns; i++) {
		if (lg->conns[i].fd >= 0)
			close_conn(lg, &lg->conns[i]);
	}
}

static void teardown(struct loadgen *lg)
{
	close_all(lg);
	if (lg->epoll_fd >= 0 && close(lg->epoll_fd) < 0)
		fail("close(epoll)");
	free(lg->conns);
	free(lg->message);
	free(lg->reply);
	free(lg->scratch);
}

/* ---- results ---- */

/* Not an error by itself: a slow server may just not have got round to them. */
static unsigned count_unanswered(const struct loadgen *lg)
{
	unsigned count = 0;

	for (unsigned i = 0; i < lg->opt.conns; i++) {
		if (lg->conns[i].state == CONN_ROUND && !lg->conns[i].served)
			count++;
	}
	return count;
}

static double latency_us(const struct loadgen *lg, double percent)
{
	return (double)hist_percentile(&lg->latency, percent) / 1e3;
}

/*
 * The figures are printed with printf in the C locale (we never call
 * setlocale()), so decimal points are always '.', as scripts expect.
 * Returns the exit status.
 */
static int print_results(struct loadgen *lg)
{
	const struct options *opt = &lg->opt;
	/* in idle mode the rounds happened while opening, not while holding */
	uint64_t begin = opt->idle ? lg->opening_ns : lg->running_ns;
	uint64_t end = opt->idle ? lg->running_ns : lg->done_ns;
	double seconds = (double)(end - begin) / NS_PER_SEC;
	double rps = seconds > 0 ? (double)lg->rounds / seconds : 0;
	double mbps = seconds > 0 ? (double)lg->rounds * (double)opt->size * 2 / seconds / 1e6 : 0;

	unsigned unanswered = count_unanswered(lg);
	if (unanswered > 0)
		fprintf(stderr, "loadgen: open connections that never got a complete reply: %u\n",
			unanswered);

	printf("loadgen: %u connections to %s, %zu-byte messages%s\n", opt->conns,
	       lg->server_name, opt->size, opt->idle ? ", idle mode" : "");
	printf("connections: %u connected, %u served, %u connect failures, %u errors, "
	       "%" PRIu64 " wrong bytes\n",
	       lg->connected, lg->served, lg->connect_failures, lg->errors, lg->wrong_bytes);
	printf("rounds: %" PRIu64 " in %.3f s = %.1f rounds/s, %.3f MB/s both ways\n",
	       lg->rounds, seconds, rps, mbps);
	printf("latency: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
	       latency_us(lg, 50), latency_us(lg, 99), latency_us(lg, 99.9),
	       (double)lg->latency.max / 1e3);
	if (opt->idle)
		printf("idle: %u of %u connections still open after %.3f s of silence\n",
		       lg->in_state[CONN_HOLDING], opt->conns,
		       (double)(lg->done_ns - lg->running_ns) / NS_PER_SEC);

	printf("RESULT conns=%u connected=%u served=%u connect_failures=%u errors=%u "
	       "wrong_bytes=%" PRIu64 " rounds=%" PRIu64 " seconds=%.3f rps=%.1f mbps=%.3f "
	       "p50_us=%.1f p99_us=%.1f p999_us=%.1f",
	       opt->conns, lg->connected, lg->served, lg->connect_failures, lg->errors,
	       lg->wrong_bytes, lg->rounds, seconds, rps, mbps,
	       latency_us(lg, 50), latency_us(lg, 99), latency_us(lg, 99.9));
	if (opt->idle)
		printf(" idle_open=%u", lg->in_state[CONN_HOLDING]);
	if (opt->server != 0)
		printf(" server_cpu_s=%.3f",
		       (double)(lg->server_cpu_end_ns - lg->server_cpu_begin_ns) / NS_PER_SEC);
	printf(" all_rounds=%" PRIu64 "\n", lg->all_rounds);

	if (fflush(stdout) == EOF) {
		fail("stdout");
		return 1;
	}
	bool clean = lg->connect_failures == 0 && lg->errors == 0 && lg->wrong_bytes == 0;
	return clean ? 0 : 3;
}

int main(int argc, char **argv)
{
	struct loadgen lg = { .epoll_fd = -1 };
	int status = 1;

	if (!parse_options(argc, argv, &lg.opt)) {
		fputs(usage_line, stderr);
		fputs("       (loadgen -h explains the options, the output and the exit status)\n", stderr);
		return 2;
	}
	if (setup(&lg) == 0 && run(&lg) == 0)
		status = print_results(&lg);
	teardown(&lg);
	return status;
}
