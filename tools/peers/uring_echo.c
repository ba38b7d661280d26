/* The io_uring callback echo server, a peer that `make compare` measures
 * chapter 09 against: one thread, one ring, a callback per completion and no
 * coroutines. Each client's loop is a single-shot recv into the client's own
 * buffer, then a send of the echo, then the next recv; one multishot accept
 * request brings every new client; and the loop is one
 * io_uring_submit_and_wait per turn, which hands the kernel every request the
 * last turn's callbacks wrote and collects every completion that came.
 *
 * Flags, 0 or 1, turn on or off the options that chapter 09's lesson
 * measures one at a time: -d SINGLE_ISSUER and DEFER_TASKRUN (on by
 * default), -a multishot accept (on), -f registered files (off), -r
 * multishot recv into a ring of provided buffers (off), -q SQPOLL, a kernel
 * thread that polls the submission ring (off; it cannot go with -d). */
#define _GNU_SOURCE

#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "addr.h"
#include "cli.h"

enum {
	/* A burst of connects beyond the backlog waits seconds for a SYN
	 * retransmission; the kernel caps it at net.core.somaxconn. */
	LISTEN_BACKLOG = 4096,
	/* Each client's own buffer, which the kernel owns while a recv is in
	 * flight: the size of chapter 09's, on its coroutine's stack. */
	BUFFER_SIZE = 2 * 1024,
	SQ_ENTRIES = 4096,
	/* One completion slot per request in flight, for tens of thousands of
	 * clients; the kernel keeps any more aside until there is room. */
	CQ_ENTRIES = 65536,
	/* Out of file descriptors, accept again after this long: the pending
	 * connections stay queued, and a new accept request would fail again
	 * at once, spinning the CPU. */
	ACCEPT_PAUSE_MS = 100,
	/* -r: the provided buffers, shared by all clients: a client holds one
	 * only from its data's arrival until its echo is sent. */
	PROVIDED_BUFFERS = 1024,
	BUFFER_GROUP = 0,
	/* -r: a client holding this many buffers that it cannot send (it
	 * does not read its echoes) stops receiving until they are sent:
	 * back-pressure, and no client can take every buffer. */
	MAX_HELD = 4,
	/* -f: the registered file table, at most. */
	MAX_FIXED_FILES = 65536,
};

struct server;

/* Anything with a request in flight: its completion's user_data points at
 * one of these, whose callback handles it. Completions with user_data NULL
 * (cancels, direct closes) need no handling. */
struct watcher {
	void (*on_complete)(struct server *server, struct watcher *w, const struct io_uring_cqe *cqe);
};

/* One client. In the plain mode it has one request in flight at a time, a
 * recv into buf or the send of buf's echo, so no completion outlives it.
 * With -r it has a multishot recv armed, and at most one send; the buffers
 * received wait in a queue (buffer ids, in order) to be echoed, and it is
 * freed once neither request is left. */
struct conn {
	struct watcher recv_watcher;    /* first: a watcher pointer is a conn pointer */
	struct watcher send_watcher;    /* -r: the send's completions */
	struct conn *prev, *next;       /* every client, to free them at exit */
	struct conn *next_starved;      /* -r: the clients waiting for a buffer */
	int fd;                         /* with -f, its index in the registered files */
	unsigned len, done;             /* the echo being sent: bytes, bytes sent */
	int queue_head, queue_tail;     /* -r: ids of buffers to echo, -1: none */
	int held;                       /* -r: how many */
	bool sending, recv_armed, at_end, closing, starved;
	char buf[];                     /* BUFFER_SIZE bytes, except with -r */
};

struct server {
	struct io_uring ring;
	bool running, verbose;
	bool accept_failing;            /* reported, and retrying every ACCEPT_PAUSE_MS */
	long defer, multishot_accept, fixed_files, provided, sqpoll;
	int listen_fd, signal_fd;
	struct watcher acceptor, accept_pause, signals;
	struct signalfd_siginfo siginfo;
	struct __kernel_timespec pause;
	struct conn *conns;
	/* -r: the buffer ring and its buffers; per buffer, its length and
	 * the next id in its client's queue. */
	struct io_uring_buf_ring *buf_ring;
	size_t buf_ring_size;
	char *buffers;
	unsigned buf_len[PROVIDED_BUFFERS];
	int next_in_queue[PROVIDED_BUFFERS];
	struct conn *starved;
};

/* A free submission slot; when every slot is taken, what they hold goes to
 * the kernel now. */
static struct io_uring_sqe *next_sqe(struct server *server)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&server->ring);
	if (sqe == NULL) {
		int err = io_uring_submit(&server->ring);
		if (err < 0) {
			errno = -err;
			cli_die("io_uring_submit");
		}
		sqe = io_uring_get_sqe(&server->ring);
		if (sqe == NULL)
			cli_die("io_uring: the submission queue stays full");
	}
	return sqe;
}

/* A request on a client's socket, for w: with -f its fd is an index in the
 * registered files. */
static void for_client(const struct server *server, struct io_uring_sqe *sqe, struct watcher *w)
{
	if (server->fixed_files)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, w);
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

static char *provided_buffer(const struct server *server, int bid)
{
	return server->buffers + (size_t)bid * BUFFER_SIZE;
}

static void arm_recv(struct server *server, struct conn *conn)
{
	struct io_uring_sqe *sqe = next_sqe(server);
	if (server->provided) {
		/* One request for every arrival from now on, each into a
		 * buffer the kernel takes from the ring. */
		io_uring_prep_recv_multishot(sqe, conn->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BUFFER_GROUP;
		conn->recv_armed = true;
	} else {
		io_uring_prep_recv(sqe, conn->fd, conn->buf, BUFFER_SIZE, 0);
	}
	for_client(server, sqe, &conn->recv_watcher);
}

/* Send the rest of the echo in buf: conn->len bytes, conn->done sent. */
static void send_rest(struct server *server, struct conn *conn, const char *buf)
{
	struct io_uring_sqe *sqe = next_sqe(server);
	/* MSG_NOSIGNAL: a client that left is an EPIPE, not a SIGPIPE. */
	io_uring_prep_send(sqe, conn->fd, buf + conn->done, conn->len - conn->done, MSG_NOSIGNAL);
	for_client(server, sqe, server->provided ? &conn->send_watcher : &conn->recv_watcher);
	conn->sending = true;
}

/* -r: a buffer is free again: back into the ring, for the kernel to fill;
 * and a client whose recv stopped for want of one may start again. */
static void give_back(struct server *server, int bid)
{
	io_uring_buf_ring_add(server->buf_ring, provided_buffer(server, bid), BUFFER_SIZE,
			      (unsigned short)bid, io_uring_buf_ring_mask(PROVIDED_BUFFERS), 0);
	io_uring_buf_ring_advance(server->buf_ring, 1);
	struct conn *conn = server->starved;
	if (conn != NULL) {
		server->starved = conn->next_starved;
		conn->starved = false;
		if (!conn->closing)
			arm_recv(server, conn);
	}
}

static void unlink_starved(struct server *server, struct conn *conn)
{
	for (struct conn **p = &server->starved; *p != NULL; p = &(*p)->next_starved) {
		if (*p == conn) {
			*p = conn->next_starved;
			break;
		}
	}
	conn->starved = false;
}

/* Close the client's socket and free it, once no request of its is left
 * (-r: its multishot recv is cancelled first). */
static void conn_close(struct server *server, struct conn *conn)
{
	if (!conn->closing && conn->recv_armed) {
		struct io_uring_sqe *sqe = next_sqe(server);
		io_uring_prep_cancel(sqe, &conn->recv_watcher, 0);
		io_uring_sqe_set_data(sqe, NULL);
	}
	conn->closing = true;
	if (conn->recv_armed || conn->sending)
		return;
	if (conn->starved)
		unlink_starved(server, conn);
	if (server->fixed_files) {
		struct io_uring_sqe *sqe = next_sqe(server);
		io_uring_prep_close_direct(sqe, (unsigned)conn->fd);
		io_uring_sqe_set_data(sqe, NULL);
	} else if (close(conn->fd) < 0) {
		cli_warn("close the client on fd %d", conn->fd);
	}
	if (server->verbose)
		cli_log("the client on %s %d disconnected", server->fixed_files ? "slot" : "fd",
			conn->fd);
	while (conn->queue_head >= 0) {
		int bid = conn->queue_head;
		conn->queue_head = server->next_in_queue[bid];
		give_back(server, bid);
	}
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		server->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	free(conn);
}

/* A recv or send failed: a client that reset or left is no news; anything
 * else is worth a line. Either way only this client ends. */
static void io_failed(struct server *server, struct conn *conn, int res, const char *what)
{
	if (res != -ECONNRESET && res != -EPIPE) {
		errno = -res;
		cli_warn("%s the client on %s %d", what, server->fixed_files ? "slot" : "fd",
			 conn->fd);
	}
	conn_close(server, conn);
}

/* The plain mode's one request finished: a recv, or a send if one was on. */
static void on_plain(struct server *server, struct watcher *w, const struct io_uring_cqe *cqe)
{
	struct conn *conn = (struct conn *)(void *)w;
	if (conn->sending) {
		conn->sending = false;
		if (cqe->res < 0) {
			io_failed(server, conn, cqe->res, "send to");
			return;
		}
		conn->done += (unsigned)cqe->res;
		if (conn->done < conn->len)
			send_rest(server, conn, conn->buf);
		else
			arm_recv(server, conn);
		return;
	}
	if (cqe->res <= 0) {
		/* 0: the client closed or half-closed, and everything it sent
		 * has been echoed: we never receive while an echo is unsent. */
		if (cqe->res == 0)
			conn_close(server, conn);
		else
			io_failed(server, conn, cqe->res, "recv from");
		return;
	}
	uppercase_ascii(conn->buf, (size_t)cqe->res);
	conn->len = (unsigned)cqe->res;
	conn->done = 0;
	send_rest(server, conn, conn->buf);
}

/* -r: echo the oldest buffer in the client's queue, unless a send is on. */
static void send_next(struct server *server, struct conn *conn)
{
	if (conn->sending || conn->queue_head < 0)
		return;
	conn->len = server->buf_len[conn->queue_head];
	conn->done = 0;
	send_rest(server, conn, provided_buffer(server, conn->queue_head));
}

/* -r: nothing left to echo: end the client if it is gone, else make sure a
 * recv is armed (it stops at the end of the stream, for want of buffers, or
 * when the client held too many). */
static void queue_drained(struct server *server, struct conn *conn)
{
	if (conn->at_end || conn->closing)
		conn_close(server, conn);
	else if (!conn->recv_armed && !conn->starved)
		arm_recv(server, conn);
}

static void on_multishot_recv(struct server *server, struct watcher *w, const struct io_uring_cqe *cqe)
{
	struct conn *conn = (struct conn *)(void *)w;
	if (!(cqe->flags & IORING_CQE_F_MORE))
		conn->recv_armed = false;
	int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	if (cqe->res > 0 && conn->closing) {
		give_back(server, bid);
	} else if (cqe->res > 0) {
		uppercase_ascii(provided_buffer(server, bid), (size_t)cqe->res);
		server->buf_len[bid] = (unsigned)cqe->res;
		server->next_in_queue[bid] = -1;
		if (conn->queue_head < 0)
			conn->queue_head = bid;
		else
			server->next_in_queue[conn->queue_tail] = bid;
		conn->queue_tail = bid;
		if (++conn->held == MAX_HELD && conn->recv_armed) {
			struct io_uring_sqe *sqe = next_sqe(server);
			io_uring_prep_cancel(sqe, &conn->recv_watcher, 0);
			io_uring_sqe_set_data(sqe, NULL);
		}
		send_next(server, conn);
	} else if (cqe->res == 0) {
		conn->at_end = true;
	} else if (cqe->res == -ENOBUFS) {
		if (!conn->recv_armed && conn->queue_head < 0 && !conn->closing) {
			conn->starved = true;
			conn->next_starved = server->starved;
			server->starved = conn;
		}
	} else if (cqe->res != -ECANCELED && !conn->closing) {
		io_failed(server, conn, cqe->res, "recv from");
		return;
	}
	if (conn->closing)
		conn_close(server, conn);
	else if (!conn->recv_armed && !conn->sending && conn->queue_head < 0)
		queue_drained(server, conn);
}

static void on_provided_send(struct server *server, struct watcher *w, const struct io_uring_cqe *cqe)
{
	struct conn *conn = (struct conn *)(void *)((char *)w - offsetof(struct conn, send_watcher));
	conn->sending = false;
	if (cqe->res < 0) {
		io_failed(server, conn, cqe->res, "send to");
		return;
	}
	if (conn->closing) {
		conn_close(server, conn);
		return;
	}
	conn->done += (unsigned)cqe->res;
	if (conn->done < conn->len) {
		send_rest(server, conn, provided_buffer(server, conn->queue_head));
		return;
	}
	int bid = conn->queue_head;
	conn->queue_head = server->next_in_queue[bid];
	conn->held--;
	give_back(server, bid);
	if (conn->queue_head >= 0)
		send_next(server, conn);
	else
		queue_drained(server, conn);
}

static void arm_accept(struct server *server)
{
	struct io_uring_sqe *sqe = next_sqe(server);
	if (server->multishot_accept && server->fixed_files)
		io_uring_prep_multishot_accept_direct(sqe, server->listen_fd, NULL, NULL, 0);
	else if (server->multishot_accept)
		io_uring_prep_multishot_accept(sqe, server->listen_fd, NULL, NULL,
					       SOCK_NONBLOCK | SOCK_CLOEXEC);
	else if (server->fixed_files)
		/* A free slot, chosen by the kernel. liburing 2.3 adds 1 to the
		 * index it is given (0 means "not direct"), hence the - 1, as
		 * its own io_uring_prep_multishot_accept_direct() does. */
		io_uring_prep_accept_direct(sqe, server->listen_fd, NULL, NULL, 0,
					    IORING_FILE_INDEX_ALLOC - 1);
	else
		io_uring_prep_accept(sqe, server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &server->acceptor);
}

static void conn_open(struct server *server, int fd)
{
	size_t size = sizeof(struct conn) + (server->provided ? 0 : BUFFER_SIZE);
	struct conn *conn = malloc(size);
	if (conn == NULL) {
		cli_warn("accept: a new connection");
		if (server->fixed_files) {
			struct io_uring_sqe *sqe = next_sqe(server);
			io_uring_prep_close_direct(sqe, (unsigned)fd);
			io_uring_sqe_set_data(sqe, NULL);
		} else {
			close(fd);
		}
		return;
	}
	*conn = (struct conn){
		.recv_watcher.on_complete = server->provided ? on_multishot_recv : on_plain,
		.send_watcher.on_complete = on_provided_send,
		.fd = fd,
		.queue_head = -1,
		.queue_tail = -1,
		.next = server->conns,
	};
	if (server->conns != NULL)
		server->conns->prev = conn;
	server->conns = conn;
	if (server->verbose && !server->fixed_files) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		char text[ADDR_TEXT_MAX] = "?";
		if (getpeername(fd, (struct sockaddr *)&addr, &len) == 0)
			addr_format((struct sockaddr *)&addr, len, text);
		cli_log("the client on fd %d connected from %s", fd, text);
	} else if (server->verbose) {
		cli_log("the client on slot %d connected", fd);
	}
	arm_recv(server, conn);
}

/* accept failed: whether to accept again at once. Out of descriptors or
 * memory, report once and wait ACCEPT_PAUSE_MS. */
static bool accept_failed(struct server *server, int res)
{
	switch (-res) {
	case ECONNABORTED:	/* the client gave up before we got to it */
	case EPROTO:		/* accept(2): Linux passes on a pending network */
	case ENETDOWN:		/* error of the new connection; treat it */
	case ENETUNREACH:	/* like EAGAIN and retry */
	case EHOSTUNREACH:
	case EHOSTDOWN:
	case ENONET:
	case ENOPROTOOPT:
	case EOPNOTSUPP:
	case EINTR:
		return true;
	case EMFILE:
	case ENFILE:		/* also: the registered file table is full */
	case ENOBUFS:
	case ENOMEM:
		errno = -res;
		if (!server->accept_failing)
			cli_warn("accept (retrying every %d ms)", ACCEPT_PAUSE_MS);
		server->accept_failing = true;
		struct io_uring_sqe *sqe = next_sqe(server);
		io_uring_prep_timeout(sqe, &server->pause, 0, 0);
		io_uring_sqe_set_data(sqe, &server->accept_pause);
		return false;
	default:
		errno = -res;
		cli_die("accept");
	}
}

static void on_accept(struct server *server, struct watcher *w, const struct io_uring_cqe *cqe)
{
	(void)w;
	bool armed = cqe->flags & IORING_CQE_F_MORE;
	if (cqe->res >= 0) {
		server->accept_failing = false;
		conn_open(server, cqe->res);
	} else if (!accept_failed(server, cqe->res)) {
		return;
	}
	if (!armed)
		arm_accept(server);
}

static void on_accept_pause(struct server *server, struct watcher *w, const struct io_uring_cqe *cqe)
{
	(void)w, (void)cqe;
	arm_accept(server);
}

static void read_signal(struct server *server)
{
	struct io_uring_sqe *sqe = next_sqe(server);
	io_uring_prep_read(sqe, server->signal_fd, &server->siginfo, sizeof server->siginfo, 0);
	io_uring_sqe_set_data(sqe, &server->signals);
}

/* SIGINT or SIGTERM: finish this turn's completions, then shut down. */
static void on_signal(struct server *server, struct watcher *w, const struct io_uring_cqe *cqe)
{
	(void)w;
	if (cqe->res == -EINTR || cqe->res == -EAGAIN) {
		read_signal(server);
		return;
	}
	if (cqe->res < 0) {
		errno = -cqe->res;
		cli_die("read the signalfd");
	}
	server->running = false;
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
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
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

/* SIGINT and SIGTERM, blocked, wait in a signalfd that the ring reads, so
 * shutdown happens between turns and never inside a callback. */
static int open_signalfd(void)
{
	/* Ignored, SIGPIPE cannot kill the server (the sends say
	 * MSG_NOSIGNAL anyway). */
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

static void open_ring(struct server *server)
{
	struct io_uring_params params = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
		.cq_entries = CQ_ENTRIES,
	};
	if (server->sqpoll) {
		/* The kernel thread inherits this thread's CPUs: pinned to one
		 * CPU, both share it. It sleeps after a second without work. */
		params.flags |= IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER;
		params.sq_thread_idle = 1000;
	} else if (server->defer) {
		params.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	}
	int err = io_uring_queue_init_params(SQ_ENTRIES, &server->ring, &params);
	if (err < 0) {
		errno = -err;
		cli_die("io_uring_setup");
	}
	if (server->fixed_files) {
		struct rlimit limit;
		unsigned files = MAX_FIXED_FILES;
		if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < files)
			files = (unsigned)limit.rlim_cur;
		err = io_uring_register_files_sparse(&server->ring, files);
		if (err < 0) {
			errno = -err;
			cli_die("io_uring_register_files_sparse");
		}
	}
	if (server->provided) {
		/* liburing 2.3 has no io_uring_setup_buf_ring() (2.4 does): the
		 * ring is page-aligned memory of ours, registered by hand. */
		server->buf_ring_size = PROVIDED_BUFFERS * sizeof(struct io_uring_buf);
		void *ring = mmap(NULL, server->buf_ring_size, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		server->buffers = malloc((size_t)PROVIDED_BUFFERS * BUFFER_SIZE);
		if (ring == MAP_FAILED || server->buffers == NULL)
			cli_die("the provided buffers");
		server->buf_ring = ring;
		struct io_uring_buf_reg reg = {
			.ring_addr = (uint64_t)(uintptr_t)ring,
			.ring_entries = PROVIDED_BUFFERS,
			.bgid = BUFFER_GROUP,
		};
		err = io_uring_register_buf_ring(&server->ring, &reg, 0);
		if (err < 0) {
			errno = -err;
			cli_die("io_uring_register_buf_ring");
		}
		io_uring_buf_ring_init(server->buf_ring);
		for (int bid = 0; bid < PROVIDED_BUFFERS; bid++)
			io_uring_buf_ring_add(server->buf_ring, provided_buffer(server, bid), BUFFER_SIZE,
					      (unsigned short)bid, io_uring_buf_ring_mask(PROVIDED_BUFFERS),
					      bid);
		io_uring_buf_ring_advance(server->buf_ring, PROVIDED_BUFFERS);
	}
}

static void server_run(struct server *server)
{
	while (server->running) {
		int err = io_uring_submit_and_wait(&server->ring, 1);
		if (err < 0 && err != -EINTR) {
			errno = -err;
			cli_die("io_uring_submit_and_wait");
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		/* A callback frees its client only once no request of the
		 * client's is left, so no later completion points at it. */
		io_uring_for_each_cqe(&server->ring, head, cqe) {
			seen++;
			struct watcher *w = io_uring_cqe_get_data(cqe);
			if (w != NULL)
				w->on_complete(server, w, cqe);
		}
		io_uring_cq_advance(&server->ring, seen);
	}
}

/* The ring goes first: closing it cancels every request still in flight,
 * after which the clients' memory and sockets are ours alone. */
static void server_close(struct server *server)
{
	io_uring_queue_exit(&server->ring);
	while (server->conns != NULL) {
		struct conn *conn = server->conns;
		server->conns = conn->next;
		if (!server->fixed_files && close(conn->fd) < 0)
			cli_warn("close the client on fd %d", conn->fd);
		free(conn);
	}
	if (server->provided) {
		munmap(server->buf_ring, server->buf_ring_size);
		free(server->buffers);
	}
	if (close(server->listen_fd) < 0)
		cli_warn("close the listening socket");
	if (close(server->signal_fd) < 0)
		cli_warn("close the signalfd");
}

int main(int argc, char **argv)
{
	static struct server server = {
		.defer = 1,
		.multishot_accept = 1,
		.acceptor.on_complete = on_accept,
		.accept_pause.on_complete = on_accept_pause,
		.signals.on_complete = on_signal,
		.pause.tv_nsec = ACCEPT_PAUSE_MS * 1000000L,
	};
	const struct cli_number flags[] = {
		{ .flag = 'd', .name = "0|1", .help = "SINGLE_ISSUER and DEFER_TASKRUN",
		  .min = 0, .max = 1, .value = &server.defer },
		{ .flag = 'a', .name = "0|1", .help = "multishot accept",
		  .min = 0, .max = 1, .value = &server.multishot_accept },
		{ .flag = 'f', .name = "0|1", .help = "registered files",
		  .min = 0, .max = 1, .value = &server.fixed_files },
		{ .flag = 'r', .name = "0|1", .help = "multishot recv into provided buffers",
		  .min = 0, .max = 1, .value = &server.provided },
		{ .flag = 'q', .name = "0|1", .help = "SQPOLL (turns -d off)",
		  .min = 0, .max = 1, .value = &server.sqpoll },
	};
	struct cli_options opts;
	cli_parse(argc, argv, flags, sizeof flags / sizeof flags[0], &opts);
	server.verbose = opts.verbose;
	server.running = true;

	/* Signals first: a SIGTERM sent as soon as the listening line appears
	 * must already find them blocked. */
	server.signal_fd = open_signalfd();
	open_ring(&server);
	server.listen_fd = listen_on(opts.host, opts.port);
	addr_announce(server.listen_fd);
	read_signal(&server);
	arm_accept(&server);
	server_run(&server);
	server_close(&server);
	return EXIT_SUCCESS;
}
