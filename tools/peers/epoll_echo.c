/* The epoll callback echo server, a peer that `make compare` measures the
 * chapters against: one thread, non-blocking sockets, a callback per ready fd
 * and no coroutines. It is the practical limit for a server on one thread. */
#define _GNU_SOURCE	/* accept4() */

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <unistd.h>

#include "addr.h"
#include "cli.h"

enum {
	/* A burst of connects beyond the backlog waits seconds for a SYN
	 * retransmission; the kernel caps it at net.core.somaxconn. */
	LISTEN_BACKLOG = 4096,
	BUFFER_SIZE = 16 * 1024,
	MAX_EVENTS = 256,
	/* Out of file descriptors, stop accepting for this long: the pending
	 * connection stays queued, and level-triggered epoll would otherwise
	 * report it again at once, spinning the CPU. */
	ACCEPT_PAUSE_MS = 100,
};

/*
 * The event loop is level-triggered. A 64-byte round then costs one
 * epoll_wait, one read and one write: read once, and if more data came than
 * the buffer took, epoll simply reports the fd again. Edge-triggered epoll
 * reports only new arrivals, so we would have to read until EAGAIN, a second
 * read every round, or risk never hearing of data left behind. One read per
 * wakeup also shares the loop fairly between clients.
 */

struct server;

/* Anything in the epoll set: its fd and the callback that serves it when it
 * is ready. The event's data.ptr points at one of these. */
struct watcher {
	int fd;
	void (*on_ready)(struct server *server, struct watcher *watcher);
};

/*
 * One client. An echo goes straight back from the server's shared buffer, so
 * an idle or keeping-up client costs only this small struct. Only what the
 * socket would not take is copied to `unsent`; until it has been written we do
 * not read from this client (back-pressure), so it never exceeds one buffer.
 */
struct conn {
	struct watcher watcher;		/* first, so a watcher pointer is a conn pointer */
	struct conn *prev, *next;	/* the list of every client, to close them at exit */
	char *unsent;			/* NULL while we are reading */
	size_t unsent_len, unsent_done;
	char peer[ADDR_TEXT_MAX];
};

struct server {
	int epoll_fd;
	bool running, verbose;
	bool accept_failing;	/* reported, and retrying every ACCEPT_PAUSE_MS */
	struct watcher listener, accept_timer, signals;
	struct conn *conns;
	char buf[BUFFER_SIZE];
};

static void close_fd(int fd, const char *what)
{
	if (close(fd) < 0)
		cli_warn("close %s", what);
}

static int watch(struct server *server, int op, struct watcher *watcher, uint32_t events)
{
	struct epoll_event event = { .events = events, .data.ptr = watcher };
	return epoll_ctl(server->epoll_fd, op, watcher->fd, &event);
}

/* The protocol uppercases ASCII letters only; toupper() would consult the
 * locale, which may map bytes >= 0x80 too. */
static void uppercase_ascii(char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		buf[i] = (char)((unsigned)(c - 'a') < 26u ? c - ('a' - 'A') : c);
	}
}

static void conn_close(struct server *server, struct conn *conn)
{
	/* close() also takes the fd out of the epoll set, since no other fd
	 * shares its open file description (epoll(7): "Will closing a file
	 * descriptor cause it to be removed from all epoll interest lists?"):
	 * an EPOLL_CTL_DEL would be one more system call for nothing. */
	close_fd(conn->watcher.fd, conn->peer);
	if (server->verbose)
		cli_log("%s disconnected", conn->peer);
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		server->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	free(conn->unsent);
	free(conn);
}

/* A read or write failed: EAGAIN (or EINTR) means try again at the next
 * event; anything else ends this client, and only this client. */
static bool io_failed(struct server *server, struct conn *conn, const char *what)
{
	if (errno == EAGAIN || errno == EINTR)
		return false;
	cli_warn("%s %s", what, conn->peer);
	conn_close(server, conn);
	return true;
}

/* The socket took only part of an echo: keep the rest, and wait until the
 * client can take more instead of reading what it sends meanwhile. */
static void keep_unsent(struct server *server, struct conn *conn, const char *rest, size_t len)
{
	conn->unsent = malloc(len);
	if (conn->unsent == NULL) {
		cli_warn("keeping %zu bytes for %s", len, conn->peer);
		conn_close(server, conn);
		return;
	}
	memcpy(conn->unsent, rest, len);
	conn->unsent_len = len;
	conn->unsent_done = 0;
	if (watch(server, EPOLL_CTL_MOD, &conn->watcher, EPOLLOUT) < 0) {
		cli_warn("epoll_ctl: wait for %s to be writable", conn->peer);
		conn_close(server, conn);
	}
}

static void echo_some(struct server *server, struct conn *conn)
{
	ssize_t got = read(conn->watcher.fd, server->buf, sizeof server->buf);
	if (got == 0) {
		/* The client closed or half-closed, and all it sent has been
		 * echoed: we never read while an echo is unsent. */
		conn_close(server, conn);
		return;
	}
	if (got < 0) {
		io_failed(server, conn, "read from");
		return;
	}
	uppercase_ascii(server->buf, (size_t)got);
	ssize_t sent = write(conn->watcher.fd, server->buf, (size_t)got);
	if (sent < 0) {
		if (io_failed(server, conn, "write to"))
			return;
		sent = 0;
	}
	if (sent < got)
		keep_unsent(server, conn, server->buf + sent, (size_t)(got - sent));
}

static void send_unsent(struct server *server, struct conn *conn)
{
	ssize_t sent = write(conn->watcher.fd, conn->unsent + conn->unsent_done,
			     conn->unsent_len - conn->unsent_done);
	if (sent < 0) {
		io_failed(server, conn, "write to");
		return;
	}
	conn->unsent_done += (size_t)sent;
	if (conn->unsent_done < conn->unsent_len)
		return;
	free(conn->unsent);
	conn->unsent = NULL;
	if (watch(server, EPOLL_CTL_MOD, &conn->watcher, EPOLLIN) < 0) {
		cli_warn("epoll_ctl: wait for %s to be readable", conn->peer);
		conn_close(server, conn);
	}
}

/* Errors and hang-ups need no test of the event bits: the next read or
 * write fails with the reason, or reads the end of the stream. */
static void on_conn_ready(struct server *server, struct watcher *watcher)
{
	struct conn *conn = (struct conn *)watcher;
	if (conn->unsent != NULL)
		send_unsent(server, conn);
	else
		echo_some(server, conn);
}

static void conn_open(struct server *server, int fd, const struct sockaddr *addr, socklen_t len)
{
	struct conn *conn = malloc(sizeof *conn);
	if (conn == NULL) {
		cli_warn("accept: a new connection");
		close_fd(fd, "a new connection");
		return;
	}
	*conn = (struct conn){ .watcher = { .fd = fd, .on_ready = on_conn_ready } };
	addr_format(addr, len, conn->peer);
	if (watch(server, EPOLL_CTL_ADD, &conn->watcher, EPOLLIN) < 0) {
		cli_warn("epoll_ctl: add %s", conn->peer);
		close_fd(fd, conn->peer);
		free(conn);
		return;
	}
	conn->next = server->conns;
	if (server->conns != NULL)
		server->conns->prev = conn;
	server->conns = conn;
	if (server->verbose)
		cli_log("%s connected", conn->peer);
}

/* Stop watching the listening socket for a while; the accept_timer's
 * callback watches it again. The failure is reported once, not at every
 * retry, until an accept succeeds. */
static void pause_accepting(struct server *server)
{
	if (!server->accept_failing)
		cli_warn("accept (retrying every %d ms)", ACCEPT_PAUSE_MS);
	server->accept_failing = true;
	if (watch(server, EPOLL_CTL_MOD, &server->listener, 0) < 0)
		cli_die("epoll_ctl: stop watching the listening socket");
	struct itimerspec pause = { .it_value.tv_nsec = ACCEPT_PAUSE_MS * 1000L * 1000L };
	if (timerfd_settime(server->accept_timer.fd, 0, &pause, NULL) < 0)
		cli_die("timerfd_settime");
}

/* accept() failed: return whether to try the next pending connection. */
static bool accept_failed(struct server *server)
{
	switch (errno) {
	case EAGAIN:		/* nobody else is waiting */
		return false;
	case EINTR:
	case ECONNABORTED:	/* the client gave up before we got to it */
	case EPROTO:		/* accept(2): Linux passes on a pending network */
	case ENETDOWN:		/* error of the new connection; treat it */
	case ENETUNREACH:	/* like EAGAIN and retry */
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case ENONET:
	case ENOPROTOOPT:
	case EOPNOTSUPP:
		return true;
	case EMFILE:		/* out of file descriptors or memory: */
	case ENFILE:		/* both free up as clients leave */
	case ENOBUFS:
	case ENOMEM:
		pause_accepting(server);
		return false;
	default:
		cli_die("accept");
	}
}

/* Accept every client queued, as libuv does: a burst of connects that is
 * taken a few per wake-up, between batches of echoes, overflows the listen
 * backlog, and the kernel drops the handshakes beyond it (each client tries
 * again a second later). Taking at most 64 per wake-up, this server served
 * 7,736 to 10,000 of 10,000 clients connecting at once within 3 s. */
static void on_listener_ready(struct server *server, struct watcher *listener)
{
	for (;;) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int fd = accept4(listener->fd, (struct sockaddr *)&addr, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			server->accept_failing = false;
			conn_open(server, fd, (struct sockaddr *)&addr, len);
		} else if (!accept_failed(server)) {
			return;
		}
	}
}

static void on_accept_timer(struct server *server, struct watcher *timer)
{
	uint64_t expirations;
	if (read(timer->fd, &expirations, sizeof expirations) < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		cli_die("read the accept timer");
	}
	if (watch(server, EPOLL_CTL_MOD, &server->listener, EPOLLIN) < 0)
		cli_die("epoll_ctl: watch the listening socket again");
}

/* SIGINT or SIGTERM: finish this batch of events, then shut down. Freeing
 * the clients here would leave later events of the batch pointing at them. */
static void on_signal(struct server *server, struct watcher *signals)
{
	struct signalfd_siginfo info;
	if (read(signals->fd, &info, sizeof info) < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		cli_die("read the signalfd");
	}
	server->running = false;
}

/* Open a non-blocking TCP socket listening on host:port, trying each address
 * the name resolves to until one works. Exits with the reason if none does. */
static int listen_on(const char *host, const char *port)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE,
	};
	struct addrinfo *addrs;
	int err = getaddrinfo(host, port, &hints, &addrs);
	if (err != 0) {
		cli_log("cannot resolve %s:%s: %s", host, port, gai_strerror(err));
		exit(EXIT_FAILURE);
	}

	int fd = -1;
	for (struct addrinfo *ai = addrs; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0)
			continue;
		/* Without SO_REUSEADDR a restarted server cannot bind its port
		 * while connections of the old one linger in TIME_WAIT. */
		int on = 1;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0 &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, LISTEN_BACKLOG) == 0)
			break;
		int saved = errno;
		close_fd(fd, "a socket that could not listen");
		errno = saved;
		fd = -1;
	}
	freeaddrinfo(addrs);
	if (fd < 0)
		cli_die("cannot listen on %s:%s", host, port);
	return fd;
}

/* SIGINT and SIGTERM, blocked, wait in a signalfd for the loop to read them,
 * so shutdown happens between events and never inside one. */
static int open_signalfd(void)
{
	/* Ignored, SIGPIPE no longer kills the server when a client that has
	 * gone away is written to; the write fails with EPIPE instead. */
	struct sigaction ignore = { .sa_handler = SIG_IGN };
	if (sigaction(SIGPIPE, &ignore, NULL) < 0)
		cli_die("sigaction SIGPIPE");

	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &stop, NULL) < 0)
		cli_die("sigprocmask: block SIGINT and SIGTERM");
	int fd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		cli_die("signalfd");
	return fd;
}

static void server_open(struct server *server, const struct cli_options *opts)
{
	server->running = true;
	server->verbose = opts->verbose;
	server->accept_failing = false;
	server->conns = NULL;
	/* Signals first: a SIGTERM sent as soon as the listening line appears
	 * must already find them blocked. */
	server->signals = (struct watcher){ .fd = open_signalfd(), .on_ready = on_signal };
	server->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (server->epoll_fd < 0)
		cli_die("epoll_create1");
	int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (timer_fd < 0)
		cli_die("timerfd_create");
	server->accept_timer = (struct watcher){ .fd = timer_fd, .on_ready = on_accept_timer };
	server->listener = (struct watcher){
		.fd = listen_on(opts->host, opts->port),
		.on_ready = on_listener_ready,
	};
	if (watch(server, EPOLL_CTL_ADD, &server->signals, EPOLLIN) < 0 ||
	    watch(server, EPOLL_CTL_ADD, &server->accept_timer, EPOLLIN) < 0 ||
	    watch(server, EPOLL_CTL_ADD, &server->listener, EPOLLIN) < 0)
		cli_die("epoll_ctl: add the signalfd, timer and listening socket");
}

static void server_run(struct server *server)
{
	struct epoll_event events[MAX_EVENTS];
	while (server->running) {
		int ready = epoll_wait(server->epoll_fd, events, MAX_EVENTS, -1);
		if (ready < 0) {
			if (errno == EINTR)	/* stopped and continued: signal(7) */
				continue;
			cli_die("epoll_wait");
		}
		/* A callback frees only its own conn, and one fd has at most
		 * one event in a batch, so no later event points at freed memory. */
		for (int i = 0; i < ready; i++) {
			struct watcher *watcher = events[i].data.ptr;
			watcher->on_ready(server, watcher);
		}
	}
}

static void server_close(struct server *server)
{
	while (server->conns != NULL)
		conn_close(server, server->conns);
	close_fd(server->listener.fd, "the listening socket");
	close_fd(server->accept_timer.fd, "the accept timer");
	close_fd(server->signals.fd, "the signalfd");
	close_fd(server->epoll_fd, "the epoll set");
}

int main(int argc, char **argv)
{
	struct cli_options opts;
	cli_parse(argc, argv, NULL, 0, &opts);

	struct server server;
	server_open(&server, &opts);
	addr_announce(server.listener.fd);
	server_run(&server);
	server_close(&server);
	return EXIT_SUCCESS;
}
