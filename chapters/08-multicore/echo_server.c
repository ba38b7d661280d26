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
 * Chapter 08: -n hubs, each a thread with its own scheduler, epoll instance
 * and listening socket on the same port (SO_REUSEPORT), so that the kernel
 * spreads the clients over them and the hubs share nothing while they
 * serve. The main thread takes the signals (sigwaitinfo) and hands them to
 * the hubs through their mailboxes. */
#define _GNU_SOURCE	/* SOCK_NONBLOCK */

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "addr.h"
#include "cli.h"
#include "co.h"
#include "green.h"
#include "hub.h"
#include "mailbox.h"
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

/* -n: how many hubs; by default one per CPU online. */
static long hub_count;

/* Each hub's own, _Thread_local like the scheduler: a hub's coroutines use
 * their hub's pool and count in their hub's tally. */
static _Thread_local struct co_pool clients;

/* For the summary at shutdown. */
struct tally {
	unsigned long accepted, idle_closed, at_signal, cut_at_deadline;
};
static _Thread_local struct tally tally;

/* What the acceptor hands to a client's coroutine. */
struct client {
	int fd;
	char peer[ADDR_TEXT_MAX];
};

/* A non-blocking TCP socket listening on addr that other sockets may listen
 * on too: -1 with errno if that fails. Non-blocking, because green_accept()
 * waits in the hub, not in accept(). */
static int listen_at(const struct sockaddr *addr, socklen_t len)
{
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Without SO_REUSEADDR a restarted server cannot bind its port while
	 * connections of the old one linger in TIME_WAIT. */
	int on = 1;
	bool ok = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0;
	/* TODO reuseport: let every hub's socket listen on the same port.
	 * Set the SO_REUSEPORT socket option (level SOL_SOCKET, an int 1, as
	 * SO_REUSEADDR just above) before bind(): then each socket of the
	 * group binds the same address and port, and the kernel hands each new
	 * connection to one of them (socket(7)).
	 * Hint: without it, the second hub's bind() fails with EADDRINUSE.
	 * Tests: every hub serves clients (two_hubs_share_the_port_and_both_serve),
	 * and every test that starts the server with -n 2.
	 */
	if (ok && bind(fd, addr, len) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
		return fd;
	int saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* The first hub's listening socket, on host:port: the first address the
 * name resolves to that works. Exits with the reason if none does. */
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
	for (struct addrinfo *ai = addrs; ai != NULL && fd < 0; ai = ai->ai_next)
		fd = listen_at(ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(addrs);
	if (fd < 0)
		cli_die("cannot listen on %s:%s", host, port);
	return fd;
}

/* One listening socket per hub: the first on host:port, the others on the
 * address it got (with port 0 the kernel picked a free port for the first). */
static void listen_on_all(const char *host, const char *port, int *fds, long n)
{
	fds[0] = listen_on(host, port);
	struct sockaddr_storage addr;
	socklen_t len = sizeof addr;
	if (getsockname(fds[0], (struct sockaddr *)&addr, &len) < 0)
		cli_die("getsockname");
	for (long i = 1; i < n; i++) {
		fds[i] = listen_at((struct sockaddr *)&addr, len);
		if (fds[i] < 0)
			cli_die("hub %ld: cannot listen on the first hub's port", i);
	}
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

/* A hub: a thread, its listening socket and its mailbox. The main thread
 * fills it in before the hub starts and reads result after it ended; while
 * the hub runs, only the hub's own thread touches the rest. */
struct hub {
	long index;
	int listen_fd;
	struct mailbox *mailbox;
	pthread_t thread;
	co_id acceptor, postman;        /* its acceptor and mailbox coroutines */
	struct tally result;            /* its tally, once it has ended */
};

/* Every hub and the main thread meet here once each hub has its epoll
 * instance and its coroutines; only then does the server say it listens.
 * A hub still starting when the first clients arrive could find the
 * descriptors used up by them, and a hub without an epoll instance serves
 * nobody, though the kernel still hands it its share of the connections. */
static pthread_barrier_t hubs_ready;

/* The summary line of a graceful shutdown, on stderr: the hubs' tallies
 * added up, and how many clients each hub accepted. */
static void report_shutdown(const struct hub *hubs, long n)
{
	struct tally sum = { 0 };
	char each[256] = "";
	size_t used = 0;
	for (long i = 0; i < n; i++) {
		const struct tally *t = &hubs[i].result;
		sum.accepted += t->accepted;
		sum.idle_closed += t->idle_closed;
		sum.at_signal += t->at_signal;
		sum.cut_at_deadline += t->cut_at_deadline;
		if (used < sizeof each) {
			int wrote = snprintf(each + used, sizeof each - used, "%shub %ld: %lu",
					     i > 0 ? ", " : "", i, t->accepted);
			used += wrote > 0 ? (size_t)wrote : 0;
		}
	}
	cli_log("shut down: %lu clients accepted (%s), %lu closed for idling; %lu connected at the "
		"signal, of which %lu finished within the %ld s grace period and %lu were "
		"closed at its end", sum.accepted, each, sum.idle_closed, sum.at_signal,
		sum.at_signal - sum.cut_at_deadline, grace_s, sum.cut_at_deadline);
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

/* Messages the main thread posts to a hub; they run on the hub's thread. */

/* SIGINT or SIGTERM: drain in a coroutine of its own (draining waits, and
 * the mailbox must go on taking messages meanwhile), then end the mailbox
 * coroutine, the hub's last: co_run() returns. */
static void shut_down(void *arg)
{
	struct hub *hub = arg;
	co_set_name("shutdown");
	drain(hub->acceptor);
	co_cancel(hub->postman);
}

static void stop_hub(void *arg)
{
	if (co_spawn(shut_down, arg) == 0)
		cli_warn("co_spawn the shutdown");
}

/* SIGUSR1 or SIGQUIT: this hub's coroutines, printed in one piece so that
 * the hubs' dumps do not interleave. */
static void dump_hub(void *arg)
{
	const struct hub *hub = arg;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (out == NULL) {
		cli_warn("open_memstream");
		return;
	}
	fprintf(out, "hub %ld:\n", hub->index);
	co_dump(out);
	if (fclose(out) == 0)
		fputs(text, stderr);
	free(text);
}

/* A hub's thread: the acceptor and the mailbox coroutine, on a scheduler
 * of its own. */
static void *run_hub(void *arg)
{
	struct hub *hub = arg;
	if (hub_open() < 0)
		cli_die("hub %ld: epoll_create1", hub->index);
	co_pool_init(&clients, max_clients);
	if (watchdog_ms > 0 && co_watchdog(watchdog_ms, stderr) < 0)
		cli_warn("hub %ld: starting the watchdog thread", hub->index);
	hub->acceptor = co_spawn(accept_clients, &hub->listen_fd);
	hub->postman = co_spawn(mailbox_serve, hub->mailbox);
	if (hub->acceptor == 0 || hub->postman == 0)
		cli_die("hub %ld: co_spawn", hub->index);
	pthread_barrier_wait(&hubs_ready);	/* cannot fail: initialised for us */
	/* co_run() returns 0 once the mailbox coroutine is cancelled, at
	 * shutdown. Anything else leaves a hub that no longer accepts its share
	 * of the clients: the server stops rather than limp on. */
	if (co_run() != 0) {
		cli_log("hub %ld: its coroutines can no longer run; stopping", hub->index);
		exit(EXIT_FAILURE);
	}
	hub->result = tally;
	return NULL;
}

/* Start the hubs, one thread each, and return once every one of them is
 * ready to serve; they inherit the signal mask, with every signal the
 * server handles blocked. */
static void start_hubs(struct hub *hubs, long n, const int *listen_fds)
{
	/* TODO start_hubs: give each hub a mailbox and a thread, then wait for all.
	 * First pthread_barrier_init(&hubs_ready, NULL, n + 1): every hub
	 * waits there once it has its epoll instance and its coroutines
	 * (run_hub), and so will this thread. Then for each i: hubs[i].index =
	 * i, .listen_fd = listen_fds[i], a mailbox_open() (cli_die if NULL),
	 * and pthread_create() of run_hub with &hubs[i]. Last,
	 * pthread_barrier_wait(&hubs_ready): when it returns, every hub can
	 * serve, and main() announces the port. The pthread calls return an
	 * error number, not -1: set errno to it before cli_die.
	 * Hint: the main thread must not touch a hub's coroutines once it runs:
	 * everything it needs is in struct hub before pthread_create().
	 * Tests: two_hubs_share_the_port_and_both_serve,
	 * every_hub_is_ready_when_the_port_is_announced, a_signal_reaches_every_hub,
	 * sigterm_drains_every_hub_without_losing_a_byte, and the shared echo suites.
	 */
	(void)hubs; (void)n; (void)listen_fds; (void)run_hub;
	errno = ENOSYS;
	cli_die("start_hubs");
}

/* Post fn(hub) to every hub. */
static void post_all(struct hub *hubs, long n, mailbox_fn *fn)
{
	for (long i = 0; i < n; i++)
		if (mailbox_post(hubs[i].mailbox, fn, &hubs[i]) < 0)
			cli_warn("hub %ld: post to its mailbox", i);
}

/* The main thread's work once the hubs run: wait for signals, hand them to
 * the hubs, and on SIGINT or SIGTERM wait for every hub to end. */
static void serve_signals(const sigset_t *set, struct hub *hubs, long n)
{
	for (;;) {
		int signo = sigwaitinfo(set, NULL);
		if (signo < 0) {
			if (errno == EINTR)
				continue;
			cli_die("sigwaitinfo");
		}
		if (signo == SIGUSR1 || signo == SIGQUIT) {
			post_all(hubs, n, dump_hub);
			continue;
		}
		post_all(hubs, n, stop_hub);
		break;
	}
	for (long i = 0; i < n; i++) {
		int err = pthread_join(hubs[i].thread, NULL);
		if (err != 0) {
			errno = err;
			cli_die("hub %ld: pthread_join", i);
		}
		mailbox_close(hubs[i].mailbox);
	}
	report_shutdown(hubs, n);
}

/* Signals the main thread takes with sigwaitinfo(): blocked here, before any
 * hub starts, so that every thread inherits the mask and none of them takes
 * one by surprise. */
static void block_signals(sigset_t *set)
{
	/* A write to a client that has gone away raises SIGPIPE, whose default
	 * action kills the whole server. Ignored, the write fails with EPIPE
	 * instead, and only that client is dropped. */
	struct sigaction ignore = { .sa_handler = SIG_IGN };
	if (sigaction(SIGPIPE, &ignore, NULL) < 0)
		cli_die("sigaction SIGPIPE");
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGQUIT);
	int err = pthread_sigmask(SIG_BLOCK, set, NULL);
	if (err != 0) {
		errno = err;
		cli_die("pthread_sigmask");
	}
}

int main(int argc, char **argv)
{
	static const struct cli_number flags[] = {
		{ .flag = 'n', .name = "HUBS",
		  .help = "run HUBS hubs, a thread each (default: one per CPU online)",
		  .min = 1, .max = 256, .value = &hub_count },
		{ .flag = 'w', .name = "MS",
		  .help = "report a coroutine that runs MS ms without waiting (0: off)",
		  .min = 0, .max = 60000, .value = &watchdog_ms },
		{ .flag = 't', .name = "SECONDS",
		  .help = "close a client idle for SECONDS (0: never)",
		  .min = 0, .max = 86400, .value = &idle_s },
		{ .flag = 'm', .name = "MAX",
		  .help = "serve at most MAX clients at once, on each hub",
		  .min = 1, .max = 1000000, .value = &max_clients },
		{ .flag = 'g', .name = "SECONDS",
		  .help = "on SIGINT/SIGTERM, give clients SECONDS to finish",
		  .min = 0, .max = 3600, .value = &grace_s },
	};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	hub_count = cpus > 0 ? cpus : 1;
	struct cli_options opts;
	cli_parse(argc, argv, flags, sizeof flags / sizeof flags[0], &opts);
	verbose = opts.verbose;

	sigset_t set;
	block_signals(&set);
	int *listen_fds = calloc((size_t)hub_count, sizeof *listen_fds);
	struct hub *hubs = calloc((size_t)hub_count, sizeof *hubs);
	if (listen_fds == NULL || hubs == NULL)
		cli_die("calloc");
	listen_on_all(opts.host, opts.port, listen_fds, hub_count);
	start_hubs(hubs, hub_count, listen_fds);
	addr_announce(listen_fds[0]);
	serve_signals(&set, hubs, hub_count);
	free(listen_fds);
	free(hubs);
	return EXIT_SUCCESS;
}
