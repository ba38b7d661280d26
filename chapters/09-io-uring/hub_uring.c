/* Chapter 09: the hub on io_uring, completion. A green call does not wait
 * for a socket to be ready and then make the call itself, as on epoll: it
 * writes the call (a submission queue entry: read fd 7 into this buffer) into
 * a ring shared with the kernel, and parks. When no coroutine can run, the
 * hub makes one io_uring_enter: it hands the kernel every entry the run queue
 * wrote, and sleeps until completions come back in the other ring (res: 64
 * bytes read). Each completion carries the address of its request, on the
 * waiting coroutine's stack, and wakes that coroutine with the result. On
 * epoll a round trip costs a read, a write and a share of epoll_wait; here
 * only a share of io_uring_enter.
 *
 * Buffer ownership: from the moment a request is in the ring until its
 * completion comes, the kernel may write into its buffer, which lives on the
 * coroutine's stack. A deadline or a cancel that ended the call there would
 * hand that stack back to the coroutine while the kernel still writes into
 * it. So an interrupted call cancels its request (IORING_OP_ASYNC_CANCEL) and
 * waits, uninterruptibly, for the request's own completion before it returns.
 * Closing an fd does not end its requests either (each holds the socket), so
 * hub_forget_fd() cancels them. */
#define _GNU_SOURCE	/* POLLRDHUP */

#include "backend.h"

#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli.h"
#include "sched.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HUB_VALGRIND 1
#endif
#endif

enum {
	/* Submission slots: a pass of the run queue that writes more requests
	 * than this hands them over in several io_uring_enter calls. */
	SQ_ENTRIES = 4096,
	/* Completion slots: one per request in flight, for up to chapter 07's
	 * 16384 clients and their acceptor. The kernel keeps any more aside
	 * (IORING_FEAT_NODROP) until there is room, which costs it time. */
	CQ_ENTRIES = 32768,
	/* With hub_uring_multishot(): the buffers the kernel receives into,
	 * shared by every socket. */
	RING_BUFFERS = 1024,
	RING_BUFFER_SIZE = 2048,
	RING_GROUP = 0,
	/* A read arms a socket's multishot recv only while at least this many
	 * buffers are in the ring; below, it makes a recv of its own. */
	RING_LOW = RING_BUFFERS / 4,
	/* A socket whose data nobody is waiting for holds at most about this
	 * many buffers: then its multishot recv is cancelled. */
	HELD_MAX = 4,
};

/* A request in flight: on the waiting coroutine's stack, for as long as the
 * call lasts. Its address is the request's user_data, which its completion
 * brings back. */
struct request {
	struct co *co;          /* the coroutine waiting for it */
	int fd;
	enum hub_dir dir;
	int result;             /* the completion's res: >= 0, or -errno */
	bool done;              /* the completion came: the kernel let go */
	bool closed;            /* cancelled by hub_forget_fd() */
};

/* Per fd: its request reading and its request writing, if any, for
 * hub_forget_fd() to cancel, one of each at a time as on epoll; and whether
 * it turned out not to be a socket (see transfer()). */
struct uring_fd {
	struct request *req[2];
	struct stream *stream;
	bool not_socket;
};

/* With hub_uring_multishot(): a socket's multishot recv, one request that
 * stays in the kernel and completes once for every arrival of data, each
 * time into a buffer the kernel takes from the hub's ring. The data waits
 * here, in those buffers, until a read copies it out. Its user_data is its
 * address plus 1 (stream_data()), which tells its completions from a
 * request's. On the heap, not on a stack: the recv outlives any one read,
 * and after hub_forget_fd() it lives on, closed, until its last completion.
 * The kernel never writes into a reader's buffer, so a read cut short has
 * nothing to take back. */
struct stream {
	int fd;
	bool armed;             /* its recv is in the kernel: more completions come */
	bool cancelling;        /* and a cancel of it is on its way */
	bool closed;            /* hub_forget_fd() came: free at the last completion */
	bool at_end;            /* the peer will send nothing more */
	int error;              /* an errno the recv ended with, for the next read */
	int head, tail;         /* the buffers received, oldest first; -1: none */
	unsigned offset;        /* bytes of the head buffer read already */
	unsigned held;          /* how many buffers it holds */
	struct co *reader;      /* parked until data comes, or NULL */
	struct stream *prev, *next;	/* every stream, for hub_uring_close() */
};

static struct {
	bool open;
	struct io_uring ring;
	struct uring_fd *fds;   /* indexed by fd */
	size_t nfds;
	size_t in_flight;       /* requests whose completion has not come */
	struct hub_uring_stats stats;
	/* hub_uring_multishot(): the provided buffer ring and its buffers. */
	bool multishot;
	struct io_uring_buf_ring *buf_ring;
	char *buffers;
	unsigned ring_free;     /* buffers in the ring, for the kernel to take */
	unsigned buf_len[RING_BUFFERS];	/* bytes received into each */
	int buf_next[RING_BUFFERS];	/* the next in its stream's queue */
	struct stream *streams;
} ur;

static bool multishot_wanted;

void hub_uring_multishot(bool on)
{
	multishot_wanted = on;
}

/* Valgrind follows every byte a system call writes, but it does not know
 * what io_uring_enter does: the kernel's writes into a read's buffer happen
 * out of its sight, and it would take the bytes for uninitialised. */
static void kernel_wrote(const void *buf, size_t len)
{
#ifdef HUB_VALGRIND
	VALGRIND_MAKE_MEM_DEFINED(buf, len);
#else
	(void)buf, (void)len;
#endif
}

static char *ring_buffer(int bid)
{
	return ur.buffers + (size_t)bid * RING_BUFFER_SIZE;
}

/* Buffer bid goes back into the ring, for the kernel to fill again. */
static void give_back(int bid)
{
	io_uring_buf_ring_add(ur.buf_ring, ring_buffer(bid), RING_BUFFER_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(RING_BUFFERS), 0);
	io_uring_buf_ring_advance(ur.buf_ring, 1);
	ur.ring_free++;
}

/* The ring of provided buffers (liburing 2.3 has no
 * io_uring_setup_buf_ring(): the ring is page-aligned memory of ours,
 * registered by hand). 0, or -1 with errno. */
static int open_buffer_ring(void)
{
	size_t size = RING_BUFFERS * sizeof(struct io_uring_buf);
	void *ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring == MAP_FAILED)
		return -1;
	ur.buffers = malloc((size_t)RING_BUFFERS * RING_BUFFER_SIZE);
	if (ur.buffers == NULL) {
		munmap(ring, size);
		return -1;
	}
	struct io_uring_buf_reg reg = {
		.ring_addr = (uint64_t)(uintptr_t)ring,
		.ring_entries = RING_BUFFERS,
		.bgid = RING_GROUP,
	};
	int err = io_uring_register_buf_ring(&ur.ring, &reg, 0);
	if (err < 0) {
		munmap(ring, size);
		free(ur.buffers);
		ur.buffers = NULL;
		errno = -err;
		return -1;
	}
	ur.buf_ring = ring;
	io_uring_buf_ring_init(ur.buf_ring);
	for (int bid = 0; bid < RING_BUFFERS; bid++)
		give_back(bid);
	return 0;
}

static void close_buffer_ring(void)
{
	if (ur.buf_ring != NULL)
		munmap(ur.buf_ring, RING_BUFFERS * sizeof(struct io_uring_buf));
	free(ur.buffers);
	ur.buf_ring = NULL;
	ur.buffers = NULL;
	ur.ring_free = 0;
}

int hub_uring_open(void)
{
	/* SINGLE_ISSUER and DEFER_TASKRUN (Linux 6.1): only this thread uses
	 * the ring, and the kernel finishes completed requests when this
	 * thread enters it for them, in one batch, instead of interrupting
	 * the thread whenever one is done. SUBMIT_ALL: a bad request (a
	 * closed fd) fails alone, not the rest of its batch. CQSIZE: see
	 * CQ_ENTRIES. An older kernel refuses the flags (EINVAL), and the hub
	 * runs on epoll there. */
	struct io_uring_params params = {
		.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			 IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
		.cq_entries = CQ_ENTRIES,
	};
	int err = io_uring_queue_init_params(SQ_ENTRIES, &ur.ring, &params);
	if (err < 0) {
		errno = -err;
		return -1;
	}
	ur.open = true;
	ur.multishot = false;
	if (multishot_wanted) {
		if (open_buffer_ring() == 0)
			ur.multishot = true;
		else
			cli_log("io_uring: no provided buffer ring (%s): one recv per read",
				strerror(errno));
	}
	return 0;
}

/* The table entry for fd, growing the table if needed; NULL if out of
 * memory. */
static struct uring_fd *slot(int fd)
{
	if ((size_t)fd >= ur.nfds) {
		size_t n = ur.nfds ? ur.nfds : 64;
		while (n <= (size_t)fd)
			n *= 2;
		struct uring_fd *fds = realloc(ur.fds, n * sizeof *fds);
		if (fds == NULL)
			return NULL;
		for (size_t i = ur.nfds; i < n; i++)
			fds[i] = (struct uring_fd){ 0 };
		ur.fds = fds;
		ur.nfds = n;
	}
	return &ur.fds[fd];
}

/* Hand every request written so far to the kernel, now. */
static void submit(void)
{
	ur.stats.enters++;
	int n = io_uring_submit(&ur.ring);
	if (n < 0 && n != -EINTR) {
		errno = -n;
		cli_die("io_uring_submit");
	}
	if (n > 0)
		ur.stats.submitted += (uint64_t)n;
}

/* A free submission slot. When every slot is taken, what they hold goes to
 * the kernel at once, and they are all free again. */
static struct io_uring_sqe *next_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ur.ring);
	if (sqe == NULL) {
		submit();
		sqe = io_uring_get_sqe(&ur.ring);
		if (sqe == NULL)
			cli_die("io_uring: the submission queue stays full");
	}
	return sqe;
}

/* Ask the kernel to cancel the request whose user_data is data, a struct
 * request or a stream's (IORING_OP_ASYNC_CANCEL, which finds it by its
 * user_data). The cancel has a completion of its own, with user_data NULL,
 * which the hub ignores: what matters is the request's completion, which
 * comes with -ECANCELED, or with its real result if it was done before the
 * cancel got to it. */
static void cancel(void *data)
{
	struct io_uring_sqe *sqe = next_sqe();
	io_uring_prep_cancel(sqe, data, 0);
	io_uring_sqe_set_data(sqe, NULL);
}

/* req's wait ended early, by its deadline or a cancel, while the kernel may
 * still write into its buffer: cancel it, and wait for it to be done. */
static void cancel_and_wait(struct request *req)
{
	/* TODO cancel_and_wait: take the buffer back from the kernel.
	 * cancel() the request, describe the wait for co_dump() (co->wait:
	 * .what "cancel", .fd req->fd), then park with
	 * co_park_uninterruptible() until req->done: the completion of the
	 * request itself, which reap() marks.
	 * Hint: a plain co_park() returns at once when the coroutine is
	 * cancelled, and a cancel can also wake the uninterruptible one (it
	 * wakes every parked coroutine): only req->done says the kernel let go.
	 * Tests: a_read_past_its_deadline_leaves_its_buffer_alone,
	 * a_cancelled_read_leaves_its_buffer_alone,
	 * a_timed_out_reader_can_end_and_its_stack_go_away,
	 * a_read_past_its_deadline_fails_with_etimedout,
	 * an_idle_client_is_closed_while_its_read_is_in_flight,
	 * shutdown_cancels_the_reads_in_flight_and_exits_cleanly.
	 */
	(void)req;
}

/* Hand the request in sqe to the hub, and park the running coroutine until
 * it is done or deadline passes (-1: none). Returns its result: >= 0, or
 * -errno; -ETIMEDOUT, -ECANCELED or -EBADF when the deadline, a cancel or
 * hub_forget_fd() cut it short. */
static int submit_and_park(struct request *req, struct io_uring_sqe *sqe, int64_t deadline)
{
	/* TODO submit_and_park: the completion way to wait.
	 * Make the request findable from its completion (io_uring_sqe_set_data:
	 * its address), count it in ur.in_flight, and hub_park_until(deadline).
	 * The hub's next io_uring_enter hands it to the kernel, together with
	 * every other request the run queue wrote; reap() wakes you, with
	 * req->done set. Woken with req->done still false (the deadline or a
	 * cancel: park returned ETIMEDOUT or ECANCELED), cancel_and_wait().
	 * Then return the result: req->result, unless that is -ECANCELED, the
	 * cancel's doing: then -EBADF if hub_forget_fd() cancelled it
	 * (req->closed), else minus the reason the park returned.
	 * Hint: do not call io_uring_submit() here: one system call per
	 * request is what io_uring is there to save.
	 * Tests: one_io_uring_enter_submits_the_whole_run_queue,
	 * a_read_completes_with_the_bytes_that_came,
	 * a_parked_reader_keeps_the_hub_waiting_for_its_completion,
	 * a_read_past_its_deadline_fails_with_etimedout,
	 * a_read_past_its_deadline_leaves_its_buffer_alone,
	 * closing_an_fd_wakes_its_reader_with_ebadf_and_the_peer_sees_the_end,
	 * the_server_runs_on_io_uring_by_default, and the echo suites.
	 */
	(void)req; (void)sqe; (void)deadline; (void)cancel_and_wait;
	return -ENOSYS;
}

/* A stream's user_data: its address plus 1. A struct request's address is
 * even (it holds pointers), and a cancel's user_data is NULL. */
static void *stream_data(struct stream *stream)
{
	return (char *)stream + 1;
}

/* The stream whose completion has user_data data, or NULL if data is not a
 * stream's. */
static struct stream *stream_of(void *data)
{
	uintptr_t u = (uintptr_t)data;
	return u & 1 ? (struct stream *)(void *)(u - 1) : NULL;
}

static void stream_free(struct stream *stream)
{
	if (stream->prev != NULL)
		stream->prev->next = stream->next;
	else
		ur.streams = stream->next;
	if (stream->next != NULL)
		stream->next->prev = stream->prev;
	free(stream);
}

/* Every buffer the stream holds goes back to the ring. */
static void drop_data(struct stream *stream)
{
	while (stream->head >= 0) {
		int bid = stream->head;
		stream->head = ur.buf_next[bid];
		give_back(bid);
	}
	stream->tail = -1;
	stream->offset = 0;
	stream->held = 0;
}

/* A completion of the stream's multishot recv: a buffer of data, the end
 * of the data, or the end of the recv (-ENOBUFS: the ring was empty;
 * -ECANCELED: HELD_MAX or hub_forget_fd(); or an error of the socket's). */
static void stream_complete(struct stream *stream, const struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		stream->armed = false;
		stream->cancelling = false;
	}
	int res = cqe->res;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		ur.ring_free--;
		if (res > 0 && !stream->closed) {
			kernel_wrote(ring_buffer(bid), (size_t)res);
			ur.buf_len[bid] = (unsigned)res;
			ur.buf_next[bid] = -1;
			if (stream->tail >= 0)
				ur.buf_next[stream->tail] = bid;
			else
				stream->head = bid;
			stream->tail = bid;
			stream->held++;
		} else {
			give_back(bid);
		}
	}
	if (res == 0)
		stream->at_end = true;
	else if (res == -ENOTSOCK && !stream->closed)
		ur.fds[stream->fd].not_socket = true;	/* the reader goes the file way */
	else if (res < 0 && res != -ENOBUFS && res != -ECANCELED)
		stream->error = -res;
	if (stream->closed) {
		if (!stream->armed && stream->reader == NULL)
			stream_free(stream);
		return;
	}
	if (stream->armed && !stream->cancelling && stream->reader == NULL &&
	    stream->held >= HELD_MAX) {
		cancel(stream_data(stream));
		stream->cancelling = true;
	}
	if (stream->reader != NULL)
		co_wake(stream->reader, 0);
}

/* Each completion's request is on its coroutine's stack, one of ten thousand,
 * and rarely in the CPU's caches: ask for all of them first, so that the
 * CPU fetches them together rather than one after the other in reap()'s
 * loop. (__builtin_prefetch(): see co.c.) */
static void prefetch_requests(void)
{
	struct io_uring_cqe *cqe;
	unsigned head;
	io_uring_for_each_cqe(&ur.ring, head, cqe)
		__builtin_prefetch(io_uring_cqe_get_data(cqe), 1);
}

/* Wake the coroutine of every completion that came, and free their slots. */
static void reap(void)
{
	prefetch_requests();
	/* TODO complete: dispatch the completions.
	 * For each completion ready (io_uring_for_each_cqe), find its request
	 * (io_uring_cqe_get_data); NULL is a cancel's own completion: skip it.
	 * (With hub_uring_multishot() some completions are a stream's: first
	 * ask stream_of() about each, and hand a stream's to
	 * stream_complete().)
	 * Otherwise note the result (cqe->res), mark the request done, uncount
	 * it from ur.in_flight and co_wake() its coroutine with 0. Then free
	 * every slot you read in one go, io_uring_cq_advance(), and count them
	 * in ur.stats.completed.
	 * Hint: mark it done before waking: only done tells a woken coroutine
	 * that the kernel has let go of its buffer.
	 * Tests: a_read_completes_with_the_bytes_that_came,
	 * one_io_uring_enter_wakes_every_completed_request,
	 * all_asleep_is_reported_once_the_reads_are_done,
	 * a_read_past_its_deadline_fails_with_etimedout,
	 * idle_server_sleeps, the echo suites, test_uring_multishot's and
	 * with_multishot_recv_closing_wakes_the_reader_with_ebadf_and_the_peer_sees_the_end.
	 */
	(void)stream_of; (void)stream_complete;
}

/* Start a call on fd for the running coroutine: its place in the fd's entry
 * (EBUSY if another coroutine has it), the wait described for co_dump(), and
 * a submission slot to write the call into. NULL, with errno, if it cannot
 * start. */
static struct io_uring_sqe *begin(struct request *req, int fd, enum hub_dir dir, const char *what)
{
	struct co *co = co_current();
	if (fd < 0 || co == NULL) {
		errno = fd < 0 ? EBADF : EPERM;
		return NULL;
	}
	if (co->cancelled) {	/* no request for one that would not wait */
		errno = ECANCELED;
		return NULL;
	}
	struct uring_fd *f = slot(fd);
	if (f == NULL)
		return NULL;
	if (f->req[dir] != NULL || (dir == HUB_READ && f->stream != NULL && f->stream->reader != NULL)) {
		errno = EBUSY;
		return NULL;
	}
	*req = (struct request){ .co = co, .fd = fd, .dir = dir };
	f->req[dir] = req;
	co->wait = (struct co_wait){ .what = what, .fd = fd };
	return next_sqe();
}

/* The call is over: its place in the fd's entry is free again (the table may
 * have moved meanwhile), and its result goes back the C way. */
static ssize_t end(struct request *req, int result)
{
	struct uring_fd *f = &ur.fds[req->fd];
	if (f->req[req->dir] == req)
		f->req[req->dir] = NULL;
	if (result < 0) {
		errno = -result;
		return -1;
	}
	return result;
}

/* One read or write. A socket's go as IORING_OP_RECV and IORING_OP_SEND,
 * straight to the socket. IORING_OP_READ and IORING_OP_WRITE work on any fd
 * (the server's signalfd, a pipe) but go through the file layer first, as
 * read(2) and write(2) do: its checks, and a file-access notification
 * (fsnotify) at every completion, a few percent of the server's CPU in
 * perf here. An fd that turns out not to be a socket (ENOTSOCK) is noted,
 * and the call goes again the file way, as do its later ones. Flags 0: a
 * send raises SIGPIPE on a connection the peer reset, as write(2) does; the
 * offset -1 of a read or write is the file's own position, as read(2) uses. */
static ssize_t transfer(int fd, enum hub_dir dir, void *buf, size_t len, int64_t deadline)
{
	unsigned n = len > UINT_MAX ? UINT_MAX : (unsigned)len;
	for (;;) {
		struct request req;
		struct io_uring_sqe *sqe = begin(&req, fd, dir, dir == HUB_READ ? "read" : "write");
		if (sqe == NULL)
			return -1;
		bool as_socket = !ur.fds[fd].not_socket;
		if (dir == HUB_READ && as_socket)
			io_uring_prep_recv(sqe, fd, buf, n, 0);
		else if (dir == HUB_READ)
			io_uring_prep_read(sqe, fd, buf, n, (uint64_t)-1);
		else if (as_socket)
			io_uring_prep_send(sqe, fd, buf, n, 0);
		else
			io_uring_prep_write(sqe, fd, buf, n, (uint64_t)-1);
		int result = submit_and_park(&req, sqe, deadline);
		if (result != -ENOTSOCK || !as_socket)
			return end(&req, result);
		end(&req, 0);
		ur.fds[fd].not_socket = true;
	}
}

/* Copy what the stream has received into buf, up to len bytes; the
 * buffers emptied go back to the ring. */
static size_t take(struct stream *stream, char *buf, size_t len)
{
	size_t got = 0;
	while (got < len && stream->head >= 0) {
		int bid = stream->head;
		size_t n = ur.buf_len[bid] - stream->offset;
		if (n > len - got)
			n = len - got;
		memcpy(buf + got, ring_buffer(bid) + stream->offset, n);
		got += n;
		stream->offset += (unsigned)n;
		if (stream->offset == ur.buf_len[bid]) {
			stream->head = ur.buf_next[bid];
			if (stream->head < 0)
				stream->tail = -1;
			stream->offset = 0;
			stream->held--;
			give_back(bid);
		}
	}
	return got;
}

static struct stream *stream_open(int fd)
{
	struct stream *stream = malloc(sizeof *stream);
	if (stream == NULL)
		return NULL;
	*stream = (struct stream){ .fd = fd, .head = -1, .tail = -1, .next = ur.streams };
	if (ur.streams != NULL)
		ur.streams->prev = stream;
	ur.streams = stream;
	return stream;
}

/* The stream's multishot recv goes to the kernel with the next batch. */
static void arm(struct stream *stream)
{
	struct io_uring_sqe *sqe = next_sqe();
	io_uring_prep_recv_multishot(sqe, stream->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RING_GROUP;
	io_uring_sqe_set_data(sqe, stream_data(stream));
	stream->armed = true;
}

enum { RECV_OF_ITS_OWN = -2 };

/* A read of socket fd from its stream, with hub_uring_multishot(): what it
 * received already, or else a park until its next completion. Returns as
 * read(2) does, or RECV_OF_ITS_OWN when the read is better made the plain
 * way: the fd is not a socket, or the ring is low. */
static ssize_t stream_read(int fd, void *buf, size_t len, int64_t deadline)
{
	struct co *co = co_current();
	struct uring_fd *f = fd < 0 || co == NULL || len == 0 ? NULL : slot(fd);
	if (f == NULL || f->not_socket || f->req[HUB_READ] != NULL)
		return RECV_OF_ITS_OWN;	/* transfer() says what is wrong */
	struct stream *stream = f->stream;
	if (stream != NULL && stream->reader != NULL) {
		errno = EBUSY;
		return -1;
	}
	for (;;) {
		if (stream != NULL && stream->head >= 0)
			return (ssize_t)take(stream, buf, len);
		if (stream != NULL && stream->error != 0) {
			errno = stream->error;
			stream->error = 0;
			return -1;
		}
		if (stream != NULL && stream->at_end)
			return 0;
		if (ur.fds[fd].not_socket)
			return RECV_OF_ITS_OWN;
		if (co->cancelled) {
			errno = ECANCELED;
			return -1;
		}
		if (stream == NULL || !stream->armed) {
			if (ur.ring_free < RING_LOW)
				return RECV_OF_ITS_OWN;
			if (stream == NULL) {
				stream = stream_open(fd);
				if (stream == NULL)
					return -1;
				ur.fds[fd].stream = stream;
			}
			arm(stream);
		}
		stream->reader = co;
		co->wait = (struct co_wait){ .what = "read", .fd = fd };
		ur.in_flight++;
		int woken = hub_park_until(deadline);
		ur.in_flight--;
		stream->reader = NULL;
		if (stream->closed) {	/* hub_forget_fd() */
			if (!stream->armed)
				stream_free(stream);
			errno = EBADF;
			return -1;
		}
		if (woken != 0 && stream->head < 0) {
			errno = woken;
			return -1;
		}
	}
}

ssize_t hub_uring_read(int fd, void *buf, size_t len, int64_t deadline)
{
	if (ur.multishot) {
		ssize_t got = stream_read(fd, buf, len, deadline);
		if (got != RECV_OF_ITS_OWN)
			return got;
	}
	ssize_t got = transfer(fd, HUB_READ, buf, len, deadline);
	if (got > 0)
		kernel_wrote(buf, (size_t)got);
	return got;
}

ssize_t hub_uring_write(int fd, const void *buf, size_t len, int64_t deadline)
{
	/* The kernel only reads from buf. */
	return transfer(fd, HUB_WRITE, (void *)buf, len, deadline);
}

int hub_uring_accept(int fd, struct sockaddr *addr, socklen_t *len, int64_t deadline)
{
	struct request req;
	struct io_uring_sqe *sqe = begin(&req, fd, HUB_READ, "accept");
	if (sqe == NULL)
		return -1;
	io_uring_prep_accept(sqe, fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int client = (int)end(&req, submit_and_park(&req, sqe, deadline));
	if (client >= 0 && len != NULL) {
		kernel_wrote(len, sizeof *len);
		kernel_wrote(addr, *len);
	}
	return client;
}

int hub_uring_connect(int fd, const struct sockaddr *addr, socklen_t len, int64_t deadline)
{
	struct request req;
	struct io_uring_sqe *sqe = begin(&req, fd, HUB_WRITE, "connect");
	if (sqe == NULL)
		return -1;
	io_uring_prep_connect(sqe, fd, addr, len);
	return (int)end(&req, submit_and_park(&req, sqe, deadline));
}

/* Readiness on io_uring: a one-shot poll request, for the waits that are
 * not a call (chapter 05's hub_wait_fd()). */
int hub_uring_wait_fd(int fd, enum hub_dir dir, int64_t deadline)
{
	/* Data a stream received already is there to read. */
	struct stream *stream = fd >= 0 && (size_t)fd < ur.nfds ? ur.fds[fd].stream : NULL;
	if (dir == HUB_READ && stream != NULL && stream->reader == NULL &&
	    (stream->head >= 0 || stream->at_end || stream->error != 0))
		return 0;
	struct request req;
	struct io_uring_sqe *sqe = begin(&req, fd, dir, dir == HUB_READ ? "read" : "write");
	if (sqe == NULL)
		return -1;
	io_uring_prep_poll_add(sqe, fd, dir == HUB_READ ? POLLIN | POLLRDHUP : POLLOUT);
	return end(&req, submit_and_park(&req, sqe, deadline)) < 0 ? -1 : 0;
}

/* fd is about to be closed: its requests would go on holding the socket
 * open, so cancel them; their coroutines wake with EBADF. The cancels go to
 * the kernel now, so that close() comes after them: a request still in the
 * submission ring would otherwise name an fd number that close() frees, and
 * that the next socket may take. */
void hub_uring_forget_fd(int fd)
{
	if ((size_t)fd >= ur.nfds)
		return;
	struct uring_fd *f = &ur.fds[fd];
	bool cancelled = false;
	for (int dir = HUB_READ; dir <= HUB_WRITE; dir++) {
		struct request *req = f->req[dir];
		if (req == NULL || req->done || req->closed)
			continue;
		req->closed = true;
		cancel(req);
		cancelled = true;
	}
	struct stream *stream = f->stream;
	if (stream != NULL) {
		f->stream = NULL;
		stream->closed = true;
		drop_data(stream);
		if (stream->armed && !stream->cancelling) {
			cancel(stream_data(stream));
			stream->cancelling = true;
		}
		cancelled |= stream->armed;	/* its recv may still be in the ring */
		if (stream->reader != NULL)
			co_wake(stream->reader, EBADF);
		else if (!stream->armed)
			stream_free(stream);
	}
	if (cancelled)
		submit();
	f->not_socket = false;	/* the number may come back as a socket */
}

size_t hub_uring_waiting(void)
{
	return ur.in_flight;
}

void hub_uring_poll(int64_t timeout_ns)
{
	unsigned pending = io_uring_sq_ready(&ur.ring);
	struct io_uring_cqe *cqe;
	int err;
	ur.stats.enters++;
	if (timeout_ns == 0) {
		err = io_uring_submit_and_get_events(&ur.ring);
	} else if (timeout_ns < 0) {
		err = io_uring_submit_and_wait(&ur.ring, 1);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = timeout_ns / 1000000000,
			.tv_nsec = timeout_ns % 1000000000,
		};
		err = io_uring_submit_and_wait_timeout(&ur.ring, &cqe, 1, &ts, NULL);
	}
	/* ETIME: the nearest timer is due; EINTR: a signal (a debugger). */
	if (err < 0 && err != -ETIME && err != -EINTR) {
		errno = -err;
		cli_die("io_uring_enter");
	}
	ur.stats.submitted += pending - io_uring_sq_ready(&ur.ring);
	reap();
}

struct hub_uring_stats hub_uring_stats(void)
{
	return ur.stats;
}

void hub_uring_close(void)
{
	if (ur.open)
		io_uring_queue_exit(&ur.ring);
	while (ur.streams != NULL)
		stream_free(ur.streams);
	close_buffer_ring();
	ur.multishot = false;
	free(ur.fds);
	ur.open = false;
	ur.fds = NULL;
	ur.nfds = 0;
	ur.in_flight = 0;
}
