/* The course's small client, for talking to an echo server by hand:
 *
 *   printf 'hello\n' | build/tools/client          prints HELLO
 *   build/tools/client -p 8001                     type lines, see replies
 *
 * It sends what it reads on stdin, and prints what the server sends back.
 * At the end of stdin it half-closes the connection (the server then echoes
 * what is left and closes), and it ends when the server has closed. Like
 * `nc -N`, without needing netcat. */
#define _GNU_SOURCE

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static _Noreturn void usage(void)
{
	fprintf(stderr, "usage: client [-H HOST] [-p PORT]   (default 127.0.0.1 8000)\n");
	exit(2);
}

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int connect_to(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	struct addrinfo *addrs;
	int err = getaddrinfo(host, port, &hints, &addrs);
	if (err != 0) {
		fprintf(stderr, "client: %s:%s: %s\n", host, port, gai_strerror(err));
		exit(1);
	}
	int fd = -1;
	for (struct addrinfo *a = addrs; a != NULL && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			fd = -1;
		}
	}
	freeaddrinfo(addrs);
	if (fd < 0) {
		fprintf(stderr, "client: connect to %s:%s: %s\n", host, port, strerror(errno));
		exit(1);
	}
	return fd;
}

/* Copy what one read() gives from `from` to `to`; false at the end of input. */
static bool copy_some(int from, int to, const char *what)
{
	char buf[65536];
	ssize_t got = read(from, buf, sizeof buf);
	if (got < 0 && errno == EINTR)
		return true;
	if (got < 0) {
		if (errno == ECONNRESET)
			return false;
		die(what);
	}
	for (ssize_t done = 0; done < got;) {
		ssize_t put = write(to, buf + done, (size_t)(got - done));
		if (put < 0 && errno != EINTR)
			die("write");
		done += put > 0 ? put : 0;
	}
	return got > 0;
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *port = "8000";
	for (int opt; (opt = getopt(argc, argv, "H:p:")) != -1;) {
		if (opt == 'H')
			host = optarg;
		else if (opt == 'p')
			port = optarg;
		else
			usage();
	}
	if (optind != argc)
		usage();
	/* A server that closes while we send makes write() fail with EPIPE,
	 * which says so, instead of killing us with SIGPIPE. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die("signal SIGPIPE");
	int fd = connect_to(host, port);
	bool sending = true;
	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = sending ? STDIN_FILENO : -1, .events = POLLIN },
		};
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (fds[0].revents != 0 && !copy_some(fd, STDOUT_FILENO, "read from the server"))
			break;	/* the server closed */
		if (fds[1].revents != 0 && !copy_some(STDIN_FILENO, fd, "read stdin")) {
			sending = false;
			if (shutdown(fd, SHUT_WR) < 0)
				die("shutdown");
		}
	}
	close(fd);
	return 0;
}
