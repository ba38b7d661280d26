/* Chapter 02: the echo server with a thread per connection. The accept loop
 * hands each client to a new kernel thread, so a slow client holds up only its
 * own thread, and a cap on the number of handler threads keeps a flood of
 * clients from exhausting the machine. */
#define _POSIX_C_SOURCE 200809L

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
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "cli.h"

enum {
	/* Clients that connect while we serve someone else wait in the kernel's
	 * accept queue. A short queue (the classic tutorials use 5) overflows
	 * under a burst and those clients wait seconds for a SYN retransmission.
	 * The kernel caps this at net.core.somaxconn. */
	LISTEN_BACKLOG = 4096,
	BUFFER_SIZE = 16 * 1024,
	/* A thread's whole stack is reserved when the thread starts: 8 MiB by
	 * default (ulimit -s), of which a handler touches a few pages (its 16 KiB
	 * buffer and the frames of read(), write() and fprintf()). 64 KiB holds
	 * that with room to spare, and 10,000 handlers reserve about 660 MiB of
	 * address space (each stack has a guard page too) instead of 78 GiB. */
	HANDLER_STACK_SIZE = 64 * 1024,
	DEFAULT_MAX_HANDLERS = 10000,
	/* On SIGINT or SIGTERM, how long handlers get to finish. */
	DRAIN_SECONDS = 2,
};

static bool verbose;

/* The handler threads: how many run, and what they have done. Every field
 * is read and written with lock held. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t ended;           /* signalled when a handler ends */
	long running;
	long max;                       /* -m: the cap on running */
	unsigned long served;           /* connections served to the end */
} handlers = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.ended = PTHREAD_COND_INITIALIZER,
	.max = DEFAULT_MAX_HANDLERS,
};

/* Detached, with a small stack; set up once in main(). */
static pthread_attr_t handler_attr;

/* What the accept loop hands to a handler thread. */
struct client {
	int fd;
	char peer[ADDR_TEXT_MAX];
};

/* The pthread functions return an error number instead of setting errno. */
static void check(int err, const char *what)
{
	if (err != 0) {
		errno = err;
		cli_die("%s", what);
	}
}

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
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
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

/* Write all len bytes of buf to fd. Returns false, with errno set, if the
 * client is gone or another error stops us. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t written = write(fd, buf, len);
		if (written < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		buf += written;
		len -= (size_t)written;
	}
	return true;
}

/* Echo one client until it closes its side of the connection. */
static void serve_client(int fd, const char *peer)
{
	char buf[BUFFER_SIZE];

	for (;;) {
		ssize_t got = read(fd, buf, sizeof buf);
		if (got == 0)
			return;
		if (got < 0) {
			if (errno == EINTR)
				continue;
			cli_warn("read from %s", peer);
			return;
		}
		uppercase_ascii(buf, (size_t)got);
		if (!write_all(fd, buf, (size_t)got)) {
			cli_warn("write to %s", peer);
			return;
		}
	}
}

/* accept() failed: decide whether to go on. Errors that concern one client,
 * or a resource that frees up when clients leave, must not stop the server. */
static void accept_failed(void)
{
	switch (errno) {
	case EINTR:		/* a signal handler ran */
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
		return;
	case EMFILE:		/* out of file descriptors or memory: */
	case ENFILE:		/* report, and pause so that retrying */
	case ENOBUFS:		/* does not spin */
	case ENOMEM: {
		cli_warn("accept");
		struct timespec pause = { .tv_nsec = 100 * 1000 * 1000 };
		if (nanosleep(&pause, NULL) < 0 && errno != EINTR)
			cli_warn("nanosleep");
		return;
	}
	default:
		cli_die("accept");
	}
}

/* Wait until fewer than the maximum number of handlers run. */
static void wait_for_free_slot(void)
{
	/* EXERCISE wait_for_slot: block while handlers.max handlers are running.
	 * Lock handlers.lock; while handlers.running has reached handlers.max,
	 * wait on handlers.ended (pthread_cond_wait releases the lock while it
	 * sleeps and takes it back before it returns); unlock. No sleeping in a
	 * loop and no busy waiting: the last handler to end wakes us.
	 * Hint: always wait in a while loop, never an if: a wake-up is a hint to
	 * look again, not a promise (pthread_cond_wait(3) allows spurious ones).
	 * Tests: cap_holds_until_a_client_leaves, and
	 * cap_holds_through_spurious_wakeups, where every other wait returns
	 * without a wake-up.
	 */
	check(pthread_mutex_lock(&handlers.lock), "pthread_mutex_lock");
	while (handlers.running >= handlers.max)
		check(pthread_cond_wait(&handlers.ended, &handlers.lock), "pthread_cond_wait");
	check(pthread_mutex_unlock(&handlers.lock), "pthread_mutex_unlock");
	/* END wait_for_slot */
}

/* The accept loop is the only thread that starts handlers, so after
 * wait_for_free_slot() the count can only fall until this raises it. */
static void handler_starting(void)
{
	check(pthread_mutex_lock(&handlers.lock), "pthread_mutex_lock");
	handlers.running++;
	check(pthread_mutex_unlock(&handlers.lock), "pthread_mutex_unlock");
}

/* A handler is done; served says whether it served its client to the end. */
static void handler_ended(bool served)
{
	/* EXERCISE handler_ended: count the handler out, safely.
	 * Many handler threads end at the same time, and "count++" is a load, an
	 * add and a store: two threads can load the same value and one increment
	 * is lost. Under handlers.lock: decrement handlers.running, add one to
	 * handlers.served if served, and signal handlers.ended so that a
	 * wait_for_free_slot() or the shutdown drain waiting for it wakes up.
	 * Hint: broadcast, do not signal. Two threads may wait on handlers.ended
	 * for different things: the accept loop for a free slot, the drain for
	 * running to reach 0. pthread_cond_signal wakes one of them, perhaps the
	 * accept loop while the drain waits for this very handler, which then
	 * sleeps until its deadline; pthread_cond_broadcast wakes both, and each
	 * looks again.
	 * Tests: counts_every_connection_exactly, shutdown_ends_when_the_last_client_leaves,
	 * failed_thread_start_drops_only_that_client, and the wait_for_slot ones.
	 */
	check(pthread_mutex_lock(&handlers.lock), "pthread_mutex_lock");
	handlers.running--;
	if (served)
		handlers.served++;
	check(pthread_cond_broadcast(&handlers.ended), "pthread_cond_broadcast");
	check(pthread_mutex_unlock(&handlers.lock), "pthread_mutex_unlock");
	/* STUB: (void)served; */
	/* END handler_ended */
}

/* A handler thread: serve one client, then clean up after it. */
static void *handler_thread(void *arg)
{
	/* EXERCISE handler_thread: serve the client that arg points to.
	 * arg is the struct client that spawn_handler() allocated for this
	 * thread alone. Log "PEER connected" if verbose, serve_client(), close
	 * the socket, log "PEER disconnected" if verbose, free the struct, and
	 * call handler_ended(true). Nobody joins a detached thread, so nobody
	 * else can free what it was given.
	 * Tests: serves_two_hundred_clients_at_once, counts_every_connection_exactly,
	 * each_handler_frees_its_client, verbose_flag_logs_each_client_by_its_address,
	 * shutdown_waits_for_every_connected_client.
	 */
	struct client *client = arg;
	if (verbose)
		cli_log("%s connected", client->peer);
	serve_client(client->fd, client->peer);
	if (close(client->fd) < 0)
		cli_warn("close %s", client->peer);
	if (verbose)
		cli_log("%s disconnected", client->peer);
	free(client);
	handler_ended(true);
	return NULL;
	/* STUB: (void)arg; (void)serve_client; */
	/* STUB: return NULL; */
	/* END handler_thread */
}

/* Serve the client on fd in a new thread of its own. */
static void spawn_handler(int fd, const char *peer)
{
	/* EXERCISE spawn_handler: start a handler thread for this client.
	 * Pass the thread a struct client of its own, from malloc(), holding fd
	 * and a copy of peer: the accept loop's variables are overwritten by the
	 * next accept(), possibly before the new thread has read them. Call
	 * handler_starting() before pthread_create(), whose thread may run and
	 * end before pthread_create() even returns. Create it with handler_attr
	 * (detached, small stack). If malloc() or pthread_create() fails
	 * (EAGAIN: out of threads), report it with cli_warn(), close fd, free
	 * what you allocated and, if you called handler_starting(), call
	 * handler_ended(false): one client is dropped, the server goes on.
	 * Hint: pthread_create returns the error number; it does not set errno.
	 * Tests: serves_two_hundred_clients_at_once, idle_client_does_not_stall_others,
	 * client_that_never_reads_does_not_stall_others, ended_handlers_give_their_stacks_back,
	 * shutdown_waits_for_every_connected_client, failed_thread_start_drops_only_that_client.
	 */
	struct client *client = malloc(sizeof *client);
	if (client == NULL) {
		cli_warn("malloc for %s", peer);
		close(fd);
		return;
	}
	client->fd = fd;
	snprintf(client->peer, sizeof client->peer, "%s", peer);
	handler_starting();
	pthread_t thread;
	int err = pthread_create(&thread, &handler_attr, handler_thread, client);
	if (err != 0) {
		errno = err;
		cli_warn("pthread_create for %s", peer);
		close(fd);
		free(client);
		handler_ended(false);
	}
	/* STUB: serve_client(fd, peer); */
	/* STUB: close(fd); */
	/* STUB: (void)handler_thread; (void)handler_starting; (void)handler_ended; */
	/* END spawn_handler */
}

/* Accept clients forever, each served by a thread of its own. */
static void accept_loop(int listen_fd)
{
	for (;;) {
		wait_for_free_slot();
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int fd = accept(listen_fd, (struct sockaddr *)&addr, &len);
		if (fd < 0) {
			accept_failed();
			continue;
		}
		char peer[ADDR_TEXT_MAX];
		spawn_handler(fd, addr_format((struct sockaddr *)&addr, len, peer));
	}
}

/* Wait up to DRAIN_SECONDS for the running handlers to end; return how many
 * connections were served. */
static unsigned long drain_handlers(void)
{
	struct timespec deadline;
	if (clock_gettime(CLOCK_REALTIME, &deadline) < 0)
		cli_die("clock_gettime");
	deadline.tv_sec += DRAIN_SECONDS;

	check(pthread_mutex_lock(&handlers.lock), "pthread_mutex_lock");
	int err = 0;
	while (handlers.running > 0 && err != ETIMEDOUT) {
		err = pthread_cond_timedwait(&handlers.ended, &handlers.lock, &deadline);
		if (err != 0 && err != ETIMEDOUT)
			check(err, "pthread_cond_timedwait");
	}
	long busy = handlers.running;
	unsigned long served = handlers.served;
	check(pthread_mutex_unlock(&handlers.lock), "pthread_mutex_unlock");
	if (busy > 0)
		cli_log("%ld clients still connected after %d s; closing them", busy, DRAIN_SECONDS);
	return served;
}

/* In a threaded program a signal is delivered to any thread that does not
 * block it. So every thread blocks SIGINT and SIGTERM, and this one thread
 * takes them with sigwait(): it runs in normal context, not in a signal
 * handler, so it may lock a mutex and call printf. */
static void *signal_thread(void *arg)
{
	const sigset_t *stop = arg;
	int signo;
	check(sigwait(stop, &signo), "sigwait");
	cli_log("served %lu connections", drain_handlers());
	/* _exit(), not exit(): handlers that are still running would use stdio
	 * and the heap while exit() tore them down. */
	_exit(EXIT_SUCCESS);
}

static void setup_threads(void)
{
	/* A write to a client that has gone away raises SIGPIPE, whose default
	 * action kills the whole server. Ignored, the write fails with EPIPE
	 * instead, and only that client is dropped. */
	struct sigaction ignore = { .sa_handler = SIG_IGN };
	if (sigaction(SIGPIPE, &ignore, NULL) < 0)
		cli_die("sigaction SIGPIPE");

	/* Block SIGINT and SIGTERM before creating any thread: threads inherit
	 * the signal mask of the thread that creates them. */
	static sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	check(pthread_sigmask(SIG_BLOCK, &stop, NULL), "pthread_sigmask");

	check(pthread_attr_init(&handler_attr), "pthread_attr_init");
	check(pthread_attr_setdetachstate(&handler_attr, PTHREAD_CREATE_DETACHED),
	      "pthread_attr_setdetachstate");
	/* The smallest stack a thread may have depends on the CPU: 16 KiB on
	 * x86-64, 128 KiB on AArch64 (sysconf(3), _SC_THREAD_STACK_MIN). */
	long least = sysconf(_SC_THREAD_STACK_MIN);
	size_t stack = least > HANDLER_STACK_SIZE ? (size_t)least : HANDLER_STACK_SIZE;
	check(pthread_attr_setstacksize(&handler_attr, stack), "pthread_attr_setstacksize");

	pthread_t waiter;
	check(pthread_create(&waiter, &handler_attr, signal_thread, &stop), "pthread_create");
}

int main(int argc, char **argv)
{
	static const struct cli_number max_handlers = {
		.flag = 'm', .name = "MAX", .help = "serve at most MAX clients at once",
		.min = 1, .max = 1000000, .value = &handlers.max,
	};
	struct cli_options opts;
	cli_parse(argc, argv, &max_handlers, 1, &opts);
	verbose = opts.verbose;

	setup_threads();
	int listen_fd = listen_on(opts.host, opts.port);
	addr_announce(listen_fd);
	accept_loop(listen_fd);
	return EXIT_SUCCESS;
}
