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
	/* TODO write_all: write every byte of buf, however many calls it takes.
	 * write() may accept fewer bytes than asked (a "short write"), or fail
	 * with EINTR before writing anything if a signal arrives; in both cases
	 * the rest must still be written. Return true once all len bytes are out,
	 * false (with errno set) on any other error.
	 * Hint: keep a pointer and a count of what is left, loop until it is 0.
	 * Tests: the write_all cases, which run the server under a shim that makes
	 * every read() and write() short and some fail with EINTR.
	 */
	return write(fd, buf, len) >= 0;
}

/* Echo one client until it closes its side of the connection. */
static void serve_client(int fd, const char *peer)
{
	char buf[BUFFER_SIZE];

	/* TODO echo_loop: echo until the client is done.
	 * Read what the client sent, uppercase it with uppercase_ascii() and send
	 * it back with write_all(); repeat. read() returning 0 means the client
	 * closed (or half-closed) its side: everything it sent has been echoed,
	 * so return. Retry a read that fails with EINTR; on any other error
	 * report it with cli_warn() naming peer, and return.
	 * Hint: read() returns as soon as some bytes are there, not a whole buffer.
	 * Tests: the echo_loop cases (every byte value, 1 MiB, half-close), and the
	 * short_io cases, whose shim makes some read() calls fail with EINTR.
	 */
	(void)fd; (void)peer; (void)buf;
	(void)uppercase_ascii; (void)write_all;
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
	/* TODO accept_loop: serve clients one after another, forever.
	 * accept() the next client (passing a struct sockaddr_storage to learn its
	 * address), format the address with addr_format(), serve the client with
	 * serve_client(), then close() its socket. When accept() fails, call
	 * accept_failed(), which retries or exits as the error deserves. With -v
	 * (the verbose flag), log "ADDRESS connected" and "ADDRESS disconnected"
	 * with cli_log().
	 * Hint: socklen_t len must be set to sizeof the address before each call.
	 * Tests: the accept_loop cases, including second_client_waits_until_first_leaves.
	 */
	(void)listen_fd;
	(void)accept_failed; (void)serve_client;
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
