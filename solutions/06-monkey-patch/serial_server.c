/* Frozen copy of solutions/01-blocking/echo_server.c
 * (tools/starter.sh freeze): its answers in place, its TODO text taken
 * out. Edit the original and run make starters: this copy is checked. */
/* Chapter 01: the blocking echo server. It accepts one client, echoes what the
 * client sends (a..z uppercased) until the client closes, and only then accepts
 * the next one: every call blocks, so one slow client holds up everyone. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
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
	 * The kernel caps this at net.core.somaxconn (4096 by default since
	 * Linux 5.4). */
	LISTEN_BACKLOG = 4096,
	BUFFER_SIZE = 16 * 1024,
};

static bool verbose;

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

/* Serve clients one at a time, forever. */
static void accept_loop(int listen_fd)
{
	for (;;) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int fd = accept(listen_fd, (struct sockaddr *)&addr, &len);
		if (fd < 0) {
			accept_failed();
			continue;
		}
		char peer[ADDR_TEXT_MAX];
		addr_format((struct sockaddr *)&addr, len, peer);
		if (verbose)
			cli_log("%s connected", peer);
		serve_client(fd, peer);
		if (close(fd) < 0)
			cli_warn("close %s", peer);
		if (verbose)
			cli_log("%s disconnected", peer);
	}
}

/* SIGINT (Ctrl-C) and SIGTERM end the server. There is nothing to flush or
 * free, so the handler exits at once: _exit() is async-signal-safe, exit()
 * is not (it runs atexit handlers and flushes stdio, which may be mid-use). */
static void on_stop_signal(int signo)
{
	(void)signo;
	_exit(EXIT_SUCCESS);
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
	addr_announce(listen_fd);
	accept_loop(listen_fd);
	return EXIT_SUCCESS;
}
