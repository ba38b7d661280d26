/* Chapter 05: the echo server on the hub. Each client gets a coroutine that
 * reads and writes as plainly as chapter 01's blocking loop; green_read() and
 * green_write() park it in the hub whenever the kernel would block, and the
 * hub sleeps in epoll_wait while nobody can run. One thread serves ten
 * thousand clients, and an idle server uses no CPU at all.
 *
 * Signals arrive through a signalfd, read by a coroutine like any socket:
 * SIGUSR1 and SIGQUIT (Ctrl-\\) print every coroutine and what it waits for.
 *
 * Chapter 07: every read and write has a deadline, so a client that sends
 * nothing for -t seconds (a slowloris) is closed; the clients are served in
 * a pool of at most -m coroutines; and SIGINT or SIGTERM stop the server
 * gracefully: no new clients, -g seconds for those connected to finish,
 * then the rest are cancelled, and a summary is printed.
 *
 * Chapter 09: the same code on a hub that runs on io_uring (-b uring, the
 * default where the kernel allows it) or on chapter 07's epoll (-b epoll).
 * Not a line of the client's coroutine changes: green_read() and
 * green_write() hand their calls to the kernel instead of waiting for the
 * socket to be ready. With -r 1 the hub reads each socket with one multishot
 * recv into buffers of its own (hub_uring_multishot()). */
#define _GNU_SOURCE	/* SOCK_NONBLOCK, signalfd */

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "addr.h"
#include "cli.h"
#include "co.h"
#include "green.h"
#include "hub.h"
#include "sync.h"

enum {
	/* Clients that connect while we serve someone else wait in the kernel's
	 * accept queue. A short queue (the classic tutorials use 5) overflows
	 * under a burst and those clients wait seconds for a SYN retransmission.
	 * The kernel caps this at net.core.somaxconn. */
	LISTEN_BACKLOG = 4096,
	/* On the coroutine's stack. Small, because every page a coroutine
	 * touches stays resident: with 2 KiB, a client's whole stack fits in
	 * one 4 KiB page, and ten thousand clients cost about 40 MiB less than
	 * with chapter 01's 16 KiB buffer. */
	BUFFER_SIZE = 2 * 1024,
	/* How long to wait before accepting again when out of descriptors. */
	EMFILE_PAUSE_MS = 100,
};

static bool verbose;
static long watchdog_ms;
/* A minute: longer than any person at a terminal or any test leaves a
 * connection quiet, and a slowloris then holds its connection a minute
 * rather than for ever. */
static long idle_s = 60;
/* Above the 10,000 clients make compare opens, below the 32,000 or so
 * coroutines that vm.max_map_count allows (see spawn_client). */
static long max_clients = 16384;
/* Long enough for an in-flight echo (milliseconds), short enough that a
 * Ctrl-C still feels like one. */
static long grace_s = 3;
/* -b: an enum hub_kind, named by the words in that order. */
static const char *const hub_kinds[] = { "auto", "uring", "epoll", NULL };
static long hub_kind = HUB_AUTO;
/* -r: hub_uring_multishot(). */
static long multishot_recv;

static struct co_pool clients;

/* For the summary at shutdown. */
static struct {
	unsigned long accepted, idle_closed, at_signal, cut_at_deadline;
} tally;

/* What the acceptor hands to a client's coroutine. */
struct client {
	int fd;
	char peer[ADDR_TEXT_MAX];
};

/* Open a TCP socket listening on host:port, trying each address the name
 * resolves to until one works. Exits with the reason if none does. */
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
		/* Non-blocking: green_accept() waits in the hub, not in accept(). */
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
		close(fd);
		errno = saved;
		fd = -1;
	}
	freeaddrinfo(addrs);
	if (fd < 0)
		cli_die("cannot listen on %s:%s", host, port);
	return fd;
}

/* The protocol uppercases ASCII letters only. toupper() would consult the
 * locale, which may map bytes >= 0x80 too; those must come back unchanged. */
static void uppercase_ascii(char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = (char)(buf[i] - 'a' + 'A');
}

/* When a client that has been quiet since now gets closed: every read and
 * every write starts the idle clock again. */
static int64_t idle_deadline(void)
{
	return idle_s > 0 ? co_now_ms() + idle_s * 1000 : -1;
}

/* Write all len bytes; green_write() parks while the socket's buffer is
 * full, and a client that reads nothing for the idle time is dropped. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t written = green_write_until(fd, buf, len, idle_deadline());
		if (written < 0)
			return false;
		buf += written;
		len -= (size_t)written;
	}
	return true;
}

/* Why a client's read or write failed, if that is worth saying. */
static void report_failure(const struct client *client, const char *what)
{
	if (errno == ETIMEDOUT) {
		tally.idle_closed++;
		if (verbose)
			cli_log("%s idle for %ld s: closing", client->peer, idle_s);
	} else if (errno != ECANCELED) {
		cli_warn("%s %s", what, client->peer);
	}
}

/* A client's coroutine: chapter 01's echo loop, with green calls. */
static void serve_client(void *arg)
{
	struct client *client = arg;
	/* A copy in a register or on this stack: the loop then touches no
	 * page of the heap, only the coroutine's own stack page. */
	int fd = client->fd;
	char buf[BUFFER_SIZE];
	co_set_name(client->peer);
	if (verbose)
		cli_log("%s connected", client->peer);
	for (;;) {
		ssize_t got = green_read_until(fd, buf, sizeof buf, idle_deadline());
		if (got == 0)
			break;
		if (got < 0) {
			report_failure(client, "read from");
			break;
		}
		uppercase_ascii(buf, (size_t)got);
		if (!write_all(fd, buf, (size_t)got)) {
			report_failure(client, "write to");
			break;
		}
	}
	if (green_close(fd) < 0)
		cli_warn("close %s", client->peer);
	if (verbose)
		cli_log("%s disconnected", client->peer);
	free(client);
}

/* Serve a new client in the pool. While the pool is full this waits, with
 * the client accepted, so that the acceptor accepts no more: the clients
 * after it wait in the kernel's accept queue, costing the server nothing.
 * false when the acceptor was cancelled while it waited. */
static bool spawn_client(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct client *client = malloc(sizeof *client);
	if (client != NULL) {
		client->fd = fd;
		addr_format(addr, len, client->peer);
	}
	if (client != NULL && co_pool_spawn(&clients, serve_client, client, -1) != 0) {
		tally.accepted++;
		return true;
	}
	bool cancelled = client != NULL && errno == ECANCELED;
	/* Each stack is two mappings (guard page and stack), so past about
	 * 32,000 coroutines the usual vm.max_map_count (65530) fails the
	 * spawn with ENOMEM even with memory free. */
	if (!cancelled)
		cli_warn("no memory for a new client's coroutine (see also "
			 "/proc/sys/vm/max_map_count)");
	free(client);
	green_close(fd);
	return !cancelled;
}

/* accept() failed: false when the server must stop accepting. */
static bool accept_failed(void)
{
	switch (errno) {
	case ECANCELED:		/* shutting down */
		return false;
	case ECONNABORTED:	/* the client gave up before we got to it */
	case EPROTO:		/* accept(2): Linux reports a pending network */
	case ENETDOWN:		/* error of the new connection here; treat */
	case ENETUNREACH:	/* it like EAGAIN and retry */
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case ENONET:
	case ENOPROTOOPT:
	case EOPNOTSUPP:
	case ETIMEDOUT:		/* the client's handshake timed out */
	case EPERM:		/* firewall rules refused this client */
		return true;
	case EMFILE:		/* out of descriptors or memory: report, */
	case ENFILE:		/* then sleep a little (the other clients */
	case ENOBUFS:		/* go on being served) and try again */
	case ENOMEM:
		cli_warn("accept");
		return co_sleep(EMFILE_PAUSE_MS) == 0;
	default:
		cli_die("accept");
	}
}

/* The acceptor coroutine. */
static void accept_clients(void *arg)
{
	int listen_fd = *(int *)arg;
	co_set_name("accept");
	for (;;) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int fd = green_accept(listen_fd, (struct sockaddr *)&addr, &len);
		if (fd >= 0) {
			if (!spawn_client(fd, (struct sockaddr *)&addr, len))
				break;
		} else if (!accept_failed()) {
			break;
		}
	}
	if (green_close(listen_fd) < 0)
		cli_warn("close the listening socket");
}

/* The summary line of a graceful shutdown, on stderr. */
static void report_shutdown(void)
{
	cli_log("shut down: %lu clients accepted, %lu closed for idling; %lu connected at the "
		"signal, of which %lu finished within the %ld s grace period and %lu were "
		"closed at its end", tally.accepted, tally.idle_closed, tally.at_signal,
		tally.at_signal - tally.cut_at_deadline, grace_s, tally.cut_at_deadline);
}

/* SIGINT or SIGTERM: stop accepting, give the clients connected now the
 * grace period to finish, then cancel those still there. */
static void drain(co_id acceptor)
{
	co_cancel(acceptor);	/* ESRCH if it ended already: then so much the better */
	if (co_join(acceptor) < 0)
		cli_warn("join the acceptor");
	tally.at_signal = co_pool_running(&clients);
	if (co_pool_wait(&clients, co_now_ms() + grace_s * 1000) == 0)
		return;
	tally.cut_at_deadline = co_pool_running(&clients);
	co_pool_cancel(&clients);
	if (co_pool_wait(&clients, -1) < 0)
		cli_warn("wait for the cancelled clients");
}

/* What the signal coroutine needs: the signalfd, and whom to stop. */
struct signals {
	int fd;
	co_id acceptor;
};

/* The signal coroutine: signals become reads from a signalfd, handled in a
 * coroutine like any other input instead of in a signal handler. */
static void watch_signals(void *arg)
{
	const struct signals *signals = arg;
	int sfd = signals->fd;
	co_set_name("signals");
	struct signalfd_siginfo info;
	for (;;) {
		ssize_t got = green_read(sfd, &info, sizeof info);
		if (got != (ssize_t)sizeof info) {
			if (got >= 0)
				errno = EIO;
			if (errno != ECANCELED)
				cli_warn("read the signalfd");
			break;
		}
		if (info.ssi_signo == SIGUSR1 || info.ssi_signo == SIGQUIT) {
			co_dump(stderr);
			continue;
		}
		drain(signals->acceptor);	/* SIGINT or SIGTERM */
		report_shutdown();
		break;
	}
	if (green_close(sfd) < 0)
		cli_warn("close the signalfd");
}

static int open_signalfd(void)
{
	/* A write to a client that has gone away raises SIGPIPE, whose default
	 * action kills the whole server. Ignored, the write fails with EPIPE
	 * instead, and only that client is dropped. */
	struct sigaction ignore = { .sa_handler = SIG_IGN };
	if (sigaction(SIGPIPE, &ignore, NULL) < 0)
		cli_die("sigaction SIGPIPE");

	/* Blocked signals stay pending, and the signalfd reads them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGQUIT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		cli_die("sigprocmask");
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		cli_die("signalfd");
	return sfd;
}

int main(int argc, char **argv)
{
	static const struct cli_number flags[] = {
		{ .flag = 'w', .name = "MS",
		  .help = "report a coroutine that runs MS ms without waiting (0: off)",
		  .min = 0, .max = 60000, .value = &watchdog_ms },
		{ .flag = 't', .name = "SECONDS",
		  .help = "close a client idle for SECONDS (0: never)",
		  .min = 0, .max = 86400, .value = &idle_s },
		{ .flag = 'm', .name = "MAX",
		  .help = "serve at most MAX clients at once",
		  .min = 1, .max = 1000000, .value = &max_clients },
		{ .flag = 'g', .name = "SECONDS",
		  .help = "on SIGINT/SIGTERM, give clients SECONDS to finish",
		  .min = 0, .max = 3600, .value = &grace_s },
		{ .flag = 'b', .name = "HUB",
		  .help = "the hub's kernel interface: uring, epoll, or auto (uring if allowed)",
		  .value = &hub_kind, .choices = hub_kinds },
		{ .flag = 'r', .name = "0|1",
		  .help = "io_uring: read sockets with a multishot recv into the hub's buffers",
		  .min = 0, .max = 1, .value = &multishot_recv },
	};
	struct cli_options opts;
	cli_parse(argc, argv, flags, sizeof flags / sizeof flags[0], &opts);
	verbose = opts.verbose;
	co_pool_init(&clients, max_clients);
	hub_uring_multishot(multishot_recv != 0);
	if (hub_open((enum hub_kind)hub_kind) < 0)
		cli_die("cannot open the hub on %s", hub_kind == HUB_EPOLL ? "epoll" : "io_uring");

	int sfd = open_signalfd();
	int listen_fd = listen_on(opts.host, opts.port);
	addr_announce(listen_fd);
	if (watchdog_ms > 0 && co_watchdog(watchdog_ms, stderr) < 0)
		cli_die("starting the watchdog thread");
	static struct signals signals;
	signals.fd = sfd;
	signals.acceptor = co_spawn(accept_clients, &listen_fd);
	if (signals.acceptor == 0 || co_spawn(watch_signals, &signals) == 0)
		cli_die("co_spawn");
	return co_run() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
