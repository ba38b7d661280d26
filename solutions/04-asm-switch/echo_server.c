/* Chapter 04: the echo server of chapter 03, unchanged, on coroutines that
 * switch in assembly. Every socket is non-blocking, and a call that would
 * block (EAGAIN) yields to the next coroutine instead. Nothing ever sleeps:
 * with no work at all, the coroutines keep taking turns to find none, at
 * 100% CPU. Chapter 05 fixes that. */
#define _GNU_SOURCE	/* accept4() */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
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

enum {
	/* Clients that connect while we serve someone else wait in the kernel's
	 * accept queue. A short queue (the classic tutorials use 5) overflows
	 * under a burst and those clients wait seconds for a SYN retransmission.
	 * The kernel caps this at net.core.somaxconn. */
	LISTEN_BACKLOG = 4096,
	/* On the coroutine's stack (CO_STACK_SIZE), with room left for the
	 * calls it makes. */
	BUFFER_SIZE = 16 * 1024,
};

static bool verbose;

/* Set by SIGINT or SIGTERM. Nothing here blocks, so every coroutine sees it
 * within one round of turns and winds down. */
static volatile sig_atomic_t stop_requested;

/* What the acceptor hands to a client's coroutine. */
struct client {
	int fd;
	char peer[ADDR_TEXT_MAX];
};

/* Let every other coroutine run once. False once the server is stopping. */
static bool take_turns(void)
{
	co_yield();
	return !stop_requested;
}

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
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

/* Read into buf what the client has sent, yielding while there is nothing.
 * Returns what read() returns; -1 with errno ECANCELED when stopping. */
static ssize_t read_some(int fd, char *buf, size_t size)
{
	for (;;) {
		ssize_t got = read(fd, buf, size);
		if (got >= 0 || (errno != EINTR && !would_block(errno)))
			return got;
		if (errno != EINTR && !take_turns()) {
			errno = ECANCELED;
			return -1;
		}
	}
}

/* Write all len bytes, yielding whenever the socket's buffer is full. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t written = write(fd, buf, len);
		if (written < 0) {
			if (errno == EINTR)
				continue;
			if (!would_block(errno))
				return false;
			if (!take_turns()) {
				errno = ECANCELED;
				return false;
			}
			continue;
		}
		buf += written;
		len -= (size_t)written;
	}
	return true;
}

/* A client's coroutine: echo until the client closes, then clean up. */
static void serve_client(void *arg)
{
	struct client *client = arg;
	char buf[BUFFER_SIZE];
	if (verbose)
		cli_log("%s connected", client->peer);
	for (;;) {
		ssize_t got = read_some(client->fd, buf, sizeof buf);
		if (got == 0)
			break;
		if (got < 0) {
			if (errno != ECANCELED)
				cli_warn("read from %s", client->peer);
			break;
		}
		uppercase_ascii(buf, (size_t)got);
		if (!write_all(client->fd, buf, (size_t)got)) {
			if (errno != ECANCELED)
				cli_warn("write to %s", client->peer);
			break;
		}
	}
	if (close(client->fd) < 0)
		cli_warn("close %s", client->peer);
	if (verbose)
		cli_log("%s disconnected", client->peer);
	free(client);
}

/* Start a coroutine for the client on fd. */
static void spawn_client(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct client *client = malloc(sizeof *client);
	if (client == NULL || !co_spawn(serve_client, client)) {
		cli_warn("no memory for a new client");
		free(client);
		close(fd);
		return;
	}
	client->fd = fd;
	addr_format(addr, len, client->peer);
}

/* accept() failed with err: report what deserves it, die if it is fatal.
 * Errors that concern one client, or a resource that frees up when clients
 * leave, must not stop the server. */
static void accept_failed(int err, bool *out_of_fds)
{
	switch (err) {
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
	case ENFILE:		/* report it once, then keep retrying while */
	case ENOBUFS:		/* the other clients are served, until some */
	case ENOMEM:		/* leave */
		if (!*out_of_fds) {
			errno = err;
			cli_warn("accept");
		}
		*out_of_fds = true;
		return;
	default:
		errno = err;
		cli_die("accept");
	}
}

/* The acceptor coroutine: accept clients until the server stops. */
static void accept_clients(void *arg)
{
	int listen_fd = *(int *)arg;
	bool out_of_fds = false;
	while (take_turns()) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int fd = accept4(listen_fd, (struct sockaddr *)&addr, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			out_of_fds = false;
			spawn_client(fd, (struct sockaddr *)&addr, len);
		} else if (!would_block(errno)) {
			accept_failed(errno, &out_of_fds);
		}
	}
	if (close(listen_fd) < 0)
		cli_warn("close the listening socket");
}

static void on_stop_signal(int signo)
{
	(void)signo;
	stop_requested = 1;
}

static void install_signal_handlers(void)
{
	/* A write to a client that has gone away raises SIGPIPE, whose default
	 * action kills the whole server. Ignored, the write fails with EPIPE
	 * instead, and only that client is dropped. */
	struct sigaction ignore = { .sa_handler = SIG_IGN };
	if (sigaction(SIGPIPE, &ignore, NULL) < 0)
		cli_die("sigaction SIGPIPE");

	struct sigaction stop = { .sa_handler = on_stop_signal };
	sigemptyset(&stop.sa_mask);
	if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0)
		cli_die("sigaction SIGINT/SIGTERM");
}

int main(int argc, char **argv)
{
	struct cli_options opts;
	cli_parse(argc, argv, NULL, 0, &opts);
	verbose = opts.verbose;

	install_signal_handlers();
	int listen_fd = listen_on(opts.host, opts.port);
	if (fcntl(listen_fd, F_SETFL, O_NONBLOCK) < 0)
		cli_die("fcntl O_NONBLOCK on the listening socket");
	addr_announce(listen_fd);
	if (!co_spawn(accept_clients, &listen_fd))
		cli_die("co_spawn");
	co_run();
	return EXIT_SUCCESS;
}
