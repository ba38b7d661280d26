/* Chapter 05: the hub, the one part of the scheduler that talks to the
 * kernel. A coroutine that must wait for a socket or for time parks here;
 * when no coroutine can run, the scheduler calls hub_poll(), which sleeps in
 * the kernel until a socket is ready or the nearest timer is due, and wakes
 * exactly the coroutines concerned.
 *
 * Chapter 09: two ways to talk to the kernel behind this one interface.
 * epoll (hub_epoll.c) is readiness: the kernel says a socket is ready, and
 * the woken coroutine makes the call itself. io_uring (hub_uring.c) is
 * completion: the coroutine hands the call itself to the kernel, with its
 * buffer, and is woken with the result; one io_uring_enter hands over every
 * call the run queue made and collects every result that came. */
#ifndef HUB_H
#define HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

enum hub_dir { HUB_READ, HUB_WRITE };

/* Which kernel interface the hub uses. HUB_AUTO: io_uring where the kernel
 * allows it, else epoll, saying why on stderr in one line. */
enum hub_kind { HUB_AUTO, HUB_URING, HUB_EPOLL };

/* Open the hub on kind, before anything else, so that a server short of file
 * descriptors later still has one. Does nothing if a hub is open already
 * (co_run() calls it with HUB_AUTO). 0, or -1 with errno set: HUB_URING
 * fails where the kernel refuses io_uring (ENOSYS, EPERM...). */
int hub_open(enum hub_kind kind);

/* "io_uring" or "epoll": what the open hub uses; NULL while none is open. */
const char *hub_name(void);

/* Whether the green calls hand the calls themselves to the hub (io_uring:
 * hub_uring_read() and its kin below) rather than wait for readiness. */
bool hub_completes(void);

/* Park the running coroutine until fd is ready to read or write, or until
 * deadline (co_now_ms() time; -1 for none). Returns 0 when ready, or -1 with
 * errno: ETIMEDOUT, EBADF (fd closed meanwhile with green_close), ECANCELED,
 * EBUSY (another coroutine already waits on fd the same way: one waiter per
 * fd and direction). Readiness is level-triggered: if fd is ready already,
 * the wait ends at the hub's next look at the kernel.
 *
 * The rule, as in Redis's ae (aeDeleteFileEvent before close) and libdill
 * (fdclean): an fd that has been waited on is closed with green_close(), or
 * hub_forget_fd() comes before its close(), dup2() over it or hand-over to
 * another thread. The epoll hub remembers what it asked epoll for each fd
 * number, so that waiting costs no system call; if an fd is closed behind its
 * back and the number comes back as another socket, the hub believes it
 * registered already, and a waiter on it is never woken. On io_uring a
 * request in flight holds the socket open even after close(): only
 * hub_forget_fd() cancels it. */
int hub_wait_fd(int fd, enum hub_dir dir, int64_t deadline);

/* A hint that spares readers a read() that would fail with EAGAIN (epoll).
 * hub_drained(fd): a read just came back short or with EAGAIN, so the socket
 * is most likely empty. hub_may_read(fd) is false from then until epoll
 * reports fd readable again. Waiting while it says true is always safe,
 * and so is reading while it says false (the hint can only be stale). */
void hub_drained(int fd);
bool hub_may_read(int fd);

/* Park the running coroutine until co_wake() or deadline (-1: none), for
 * waits that are not on an fd (chapter 07's wait queues); fill in its
 * co->wait first. Returns what co_wake() gave (0 or an errno), ETIMEDOUT at
 * the deadline, ECANCELED at once if cancelled. */
int hub_park_until(int64_t deadline);

/* Park the running coroutine until deadline. 0, or -1 with ECANCELED. */
int hub_sleep_until(int64_t deadline);

/* fd is about to be closed (or handed to another thread): wake its waiters
 * with EBADF, take it out of the epoll set or cancel its requests in flight,
 * and forget it. */
void hub_forget_fd(int fd);

/* Wait for the next socket event, completion or timer (block), or only look
 * whether any has come (!block), and wake the coroutines it concerns.
 * Returns false, at once, when nothing is waited for at all: no socket, no
 * request and no timer could ever wake anyone. */
bool hub_poll(bool block);

/* How many times hub_poll() has been to the kernel. */
uint64_t hub_loops(void);

/* Release the hub once every coroutine ended. */
void hub_close(void);

/* ---- Chapter 09: the calls themselves, on io_uring (hub_uring.c) ---------
 * Each hands the call to the kernel and parks the running coroutine until it
 * is done, or until deadline (-1: none). While it is in flight the kernel
 * owns buf (and addr): the call returns only once the kernel has let go of
 * them, so a deadline or a cancel first cancels the request and waits for it
 * to end. Results as read(2), write(2), accept4(2) and connect(2): -1 with
 * errno on failure, ETIMEDOUT at the deadline, ECANCELED when the coroutine
 * is cancelled, EBADF when fd is forgotten meanwhile (hub_forget_fd), EBUSY
 * when another coroutine already waits on fd the same way. A call that
 * completed before its cancel could take effect returns its real result:
 * the bytes it read are the caller's, not lost. */
ssize_t hub_uring_read(int fd, void *buf, size_t len, int64_t deadline);
ssize_t hub_uring_write(int fd, const void *buf, size_t len, int64_t deadline);
int hub_uring_accept(int fd, struct sockaddr *addr, socklen_t *len, int64_t deadline);
int hub_uring_connect(int fd, const struct sockaddr *addr, socklen_t len, int64_t deadline);

/* Going further: with on, the io_uring hub opened next reads each socket
 * with one multishot recv, armed at its first read, that stays in the kernel
 * and receives every arrival into a ring of buffers the hub provides; a read
 * copies out of them. No buffer of the caller's is ever the kernel's: a read
 * cut short has nothing to take back. Off by default (the chapter's
 * one-recv-per-read is what the exercises and tests are about). */
void hub_uring_multishot(bool on);

/* For the lesson's measurements, and co_dump(): io_uring_enter calls so far,
 * the requests they submitted, and the completions reaped. All 0 on epoll. */
struct hub_uring_stats {
	uint64_t enters, submitted, completed;
};
struct hub_uring_stats hub_uring_stats(void);

#endif
