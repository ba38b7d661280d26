/* Clients of the server under test: connections, conversations with a
 * deadline, payloads and the checks of what came back; see harness.h. */
#define _GNU_SOURCE

#include "harness.h"
#include "harness_private.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"

/* How long a conversation may take by default: a small echo on loopback
 * takes well under a millisecond. */
enum { DEFAULT_TIMEOUT_MS = 2000 };

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
		harness_fail(SYMPTOM_SETUP, "getaddrinfo %s:%s: %s", s->host, s->port, gai_strerror(err));
	int fd = socket(addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		harness_fail(SYMPTOM_SETUP, "socket: %s", strerror(errno));
	/* Before connect(), or the window is already agreed (socket(7)). */
	if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0)
		harness_fail(SYMPTOM_SETUP, "setsockopt SO_RCVBUF: %s", strerror(errno));
	int rc = connect(fd, addr->ai_addr, addr->ai_addrlen);
	freeaddrinfo(addr);
	if (rc < 0 && errno != EINPROGRESS)
		harness_fail(SYMPTOM_CHECK, "connect to %s:%s: %s", s->host, s->port, strerror(errno));

	/* The kernel completes a connection into the listening socket's
	 * backlog whether or not the server calls accept(); a connect() that
	 * does not complete means that backlog is full. */
	int timeout = harness_cut_ms(DEFAULT_TIMEOUT_MS);
	if (!harness_ready_by(fd, POLLOUT, harness_now_ms() + timeout))
		harness_fail(SYMPTOM_NO_REPLY, "connect to %s:%s did not complete within %d ms: the "
			     "server's backlog is full, so it accepts no one", s->host, s->port, timeout);
	socklen_t len = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
		harness_fail(SYMPTOM_CHECK, "connect to %s:%s: %s (is the server still running?)",
			     s->host, s->port,
			strerror(err));
	return fd;
}

void th_client_address(int fd, char *text, size_t size)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof addr;
	char formatted[ADDR_TEXT_MAX];
	if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
		harness_fail(SYMPTOM_SETUP, "getsockname: %s", strerror(errno));
	addr_format((struct sockaddr *)&addr, len, formatted);
	snprintf(text, size, "%s", formatted);
}

void th_socket_pair(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
		harness_fail(SYMPTOM_SETUP, "socketpair: %s", strerror(errno));
}

void th_close(int fd)
{
	if (close(fd) < 0)
		harness_fail(SYMPTOM_SETUP, "close: %s", strerror(errno));
}

void th_reset(int fd)
{
	/* A zero linger time makes close() drop unsent data and send an RST. */
	struct linger abort_now = { .l_onoff = 1, .l_linger = 0 };
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now) < 0)
		harness_fail(SYMPTOM_SETUP, "setsockopt SO_LINGER: %s", strerror(errno));
	th_close(fd);
}

static void receive_some(int fd, struct th_reply *r, size_t *cap)
{
	if (*cap - r->len < 65536) {
		*cap = *cap * 2 + 65536;
		r->data = realloc(r->data, *cap);
		if (r->data == NULL)
			harness_fail(SYMPTOM_SETUP, "out of memory");
	}
	ssize_t got = recv(fd, r->data + r->len, *cap - r->len, 0);
	if (got > 0)
		r->len += (size_t)got;
	else if (got == 0)
		r->eof = true;
	else if (errno == ECONNRESET)
		r->eof = r->reset = true;
	else if (errno != EAGAIN && errno != EINTR)
		harness_fail(SYMPTOM_SETUP, "recv: %s", strerror(errno));
}

/* One connection's part in th_exchange_many(). */
struct flow {
	int fd;
	const struct th_exchange *ex;
	struct th_reply *reply;
	size_t cap;              /* of reply->data */
	bool shut;               /* SHUT_WR done */
	bool done;
	long long start;
	long long deadline;
	long long moved;         /* when a byte last went either way */
	size_t checked;          /* reply bytes found to be as expected */
	int stall_ms;            /* give up after this long without one (or 0) */
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
		f->next_send = harness_now_ms() + ex->pause_ms;
	} else if (errno == EPIPE || errno == ECONNRESET) {
		r->eof = r->reset = true;
	} else if (errno != EAGAIN && errno != EINTR) {
		harness_fail(SYMPTOM_SETUP, "send: %s", strerror(errno));
	}
}

/* Has the reply already parted from what it should be? Then no byte that
 * comes later can mend it. */
static bool went_wrong(struct flow *f)
{
	const unsigned char *expect = f->ex->expect;
	const struct th_reply *r = f->reply;
	if (expect == NULL)
		return false;
	size_t upto = r->len < f->ex->want ? r->len : f->ex->want;
	for (; f->checked < upto; f->checked++)
		if (r->data[f->checked] != expect[f->checked])
			return true;
	return false;
}

/* Is this flow finished? Half-closes it once everything is sent. */
static bool flow_finished(struct flow *f)
{
	const struct th_exchange *ex = f->ex;
	struct th_reply *r = f->reply;
	bool all_sent = r->sent == ex->send_len;
	if (all_sent && ex->shut_wr && !f->shut) {
		if (shutdown(f->fd, SHUT_WR) < 0)
			harness_fail(SYMPTOM_SETUP, "shutdown(SHUT_WR): %s", strerror(errno));
		f->shut = true;
	}
	bool have_all = ex->until_eof ? r->eof : r->len >= ex->want;
	if ((all_sent && have_all) || r->eof || went_wrong(f))
		return true;
	long long now = harness_now_ms();
	if (now >= f->deadline || (f->stall_ms > 0 && now - f->moved >= f->stall_ms)) {
		r->timed_out = true;
		r->waited_ms = (int)(now - f->moved);
		r->cut_short = now < f->deadline;
		return true;
	}
	return false;
}

/* When this flow gives up, unless something moves first. */
static long long give_up_at(const struct flow *f)
{
	long long stalled = f->moved + f->stall_ms;
	return f->stall_ms > 0 && stalled < f->deadline ? stalled : f->deadline;
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
		bool may_send = unsent && harness_now_ms() >= f->next_send;
		pfds[i] = (struct pollfd){ .fd = f->fd, .events = POLLIN | (may_send ? POLLOUT : 0) };
		long long end = give_up_at(f);
		long long next = unsent && !may_send && f->next_send < end ? f->next_send : end;
		if (wake < 0 || next < wake)
			wake = next;
	}
	if (active == 0)
		return false;
	int ready = poll(pfds, n, harness_ms_until(wake));
	if (ready < 0 && errno != EINTR)
		harness_fail(SYMPTOM_SETUP, "poll: %s", strerror(errno));
	for (size_t i = 0; ready > 0 && i < n; i++) {
		struct th_reply *r = flows[i].reply;
		size_t before = r->len + r->sent;
		if (pfds[i].fd < 0)
			continue;
		if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR))
			receive_some(flows[i].fd, r, &flows[i].cap);
		if (!r->eof && (pfds[i].revents & POLLOUT))
			send_some(&flows[i]);
		if (r->len + r->sent != before)
			flows[i].moved = harness_now_ms();
	}
	return true;
}

void th_exchange_many(const int *fds, const struct th_exchange *ex, struct th_reply *replies, size_t n)
{
	struct flow *flows = calloc(n, sizeof *flows);
	struct pollfd *pfds = calloc(n, sizeof *pfds);
	if (flows == NULL || pfds == NULL)
		harness_fail(SYMPTOM_SETUP, "out of memory");
	long long start = harness_now_ms();
	for (size_t i = 0; i < n; i++) {
		replies[i] = (struct th_reply){ 0 };
		int timeout = th_ms(ex[i].timeout_ms > 0 ? ex[i].timeout_ms : DEFAULT_TIMEOUT_MS);
		flows[i] = (struct flow){ .fd = fds[i], .ex = &ex[i], .reply = &replies[i],
					  .start = start, .deadline = start + timeout, .moved = start,
					  .stall_ms = harness_stall_ms(timeout), .next_send = start };
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
	while (sent < max && harness_ready_by(fd, POLLOUT, harness_now_ms() + 200)) {
		ssize_t put = send(fd, data + sent, max - sent, MSG_NOSIGNAL);
		if (put < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (put < 0)
			harness_fail(SYMPTOM_SETUP, "send: %s", strerror(errno));
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

/* The echo of len bytes, malloc'd. */
static unsigned char *echo_of(const void *data, size_t len)
{
	unsigned char *echo = malloc(len > 0 ? len : 1);
	if (echo == NULL)
		harness_fail(SYMPTOM_SETUP, "out of memory");
	th_uppercase(data, echo, len);
	return echo;
}

void th_expect_echo(int fd, const void *msg, size_t len)
{
	unsigned char *echo = echo_of(msg, len);
	struct th_exchange ex = { .send = msg, .send_len = len, .want = len, .expect = echo };
	struct th_reply reply;
	th_exchange(fd, &ex, &reply);
	free(echo);
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
	static char text[128];
	if (r->reset)
		return "the server reset the connection";
	if (r->eof)
		return "the server closed the connection";
	if (r->timed_out) {
		snprintf(text, sizeof text, "then nothing more for %d ms%s", r->waited_ms,
			 r->cut_short ? ", when the test gave up early because an earlier test hung" : "");
		return text;
	}
	return "the reply is complete";
}

void th_check_echo(const void *sent, size_t sent_len, const struct th_reply *r)
{
	unsigned char *expected = malloc(sent_len + 1);
	if (expected == NULL)
		harness_fail(SYMPTOM_SETUP, "out of memory");
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
	/* A right beginning that stops short, while the connection stays
	 * open: the server did not answer (the rest is about why). */
	bool stalled = at == r->len && r->timed_out;
	harness_fail(!stalled ? SYMPTOM_CHECK : r->len == 0 ? SYMPTOM_NO_REPLY : SYMPTOM_STALLED,
		"sent %zu bytes (%zu of them delivered) and expected them back uppercased, "
		"but got %zu bytes (%s).\n"
		"  First difference at byte %zu:\n"
		"    sent:     %s\n"
		"    expected: %s\n"
		"    got:      %s",
		sent_len, r->sent, r->len, how_it_ended(r), at, s, e, g);
}

void th_expect_silence(int fd, int ms, const char *why)
{
	if (!harness_ready_by(fd, POLLIN, harness_now_ms() + ms))
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
		harness_fail(SYMPTOM_STALLED, "expected the server to close the connection; it kept "
			     "it open, silent, for %d ms%s", reply.waited_ms, reply.cut_short ?
			     " (the test gave up early because an earlier test hung)" : "");
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
		harness_fail(SYMPTOM_SETUP, "out of memory");
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
		harness_fail(SYMPTOM_SETUP, "out of memory for %zu clients", clients);
	/* All connected first: every exchange then runs while the server holds
	 * all the connections at once. */
	unsigned char *echo = echo_of(data, len);
	for (size_t i = 0; i < clients; i++) {
		fds[i] = th_connect(server);
		ex[i] = (struct th_exchange){ .send = data, .send_len = len, .chunk = chunk,
					      .want = len, .timeout_ms = timeout_ms, .expect = echo };
	}
	th_exchange_many(fds, ex, replies, clients);
	free(echo);
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
		harness_fail(SYMPTOM_SETUP, "getrlimit: %s", strerror(errno));
	limit.rlim_cur = limit.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
		harness_fail(SYMPTOM_SETUP, "setrlimit: %s", strerror(errno));
	/* Room for the process's own descriptors besides the clients. */
	long room = limit.rlim_max == RLIM_INFINITY ? wanted : (long)limit.rlim_max - 64;
	if (room >= wanted)
		return wanted;
	fprintf(stderr, "note: RLIMIT_NOFILE's hard limit is %ld here: testing with %ld clients "
		"instead of %ld\n", (long)limit.rlim_max, room, wanted);
	return room;
}

