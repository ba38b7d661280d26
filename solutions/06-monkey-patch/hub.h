/* Chapter 05: the hub, the one part of the scheduler that talks to the
 * kernel. A coroutine that must wait for a socket or for time parks here;
 * when no coroutine can run, the scheduler calls hub_poll(), which sleeps in
 * epoll_wait until a socket is ready or the nearest timer is due, and wakes
 * exactly the coroutines concerned. */
#ifndef HUB_H
#define HUB_H

#include <stdbool.h>
#include <stdint.h>

enum hub_dir { HUB_READ, HUB_WRITE };

/* Create the epoll instance: before anything else, so that a server short of
 * file descriptors later still has one. 0, or -1 with errno set. */
int hub_open(void);

/* Park the running coroutine until fd is ready to read or write, or until
 * deadline (co_now_ms() time; -1 for none). Returns 0 when ready, or -1 with
 * errno: ETIMEDOUT, EBADF (fd closed meanwhile with green_close), ECANCELED,
 * EBUSY (another coroutine already waits on fd the same way: one waiter per
 * fd and direction). Readiness is level-triggered: if fd is ready already,
 * the wait ends at the hub's next epoll_wait.
 *
 * The rule, as in Redis's ae (aeDeleteFileEvent before close) and libdill
 * (fdclean): an fd that has been waited on is closed with green_close(), or
 * hub_forget_fd() comes before its close(), dup2() over it or hand-over to
 * another thread. The hub remembers what it asked epoll for each fd number,
 * so that waiting costs no system call; if an fd is closed behind its back and
 * the number comes back as another socket, the hub believes it registered
 * already, and a waiter on it is never woken. */
int hub_wait_fd(int fd, enum hub_dir dir, int64_t deadline);

/* A hint that spares readers a read() that would fail with EAGAIN.
 * hub_drained(fd): a read just came back short or with EAGAIN, so the socket
 * is most likely empty. hub_may_read(fd) is false from then until epoll
 * reports fd readable again. Waiting while it says true is always safe,
 * and so is reading while it says false (the hint can only be stale). */
void hub_drained(int fd);
bool hub_may_read(int fd);

/* Park the running coroutine until deadline. 0, or -1 with ECANCELED. */
int hub_sleep_until(int64_t deadline);

/* fd is about to be closed (or handed to another thread): wake its waiters
 * with EBADF, take it out of the epoll set, and forget it. */
void hub_forget_fd(int fd);

/* Wait for the next socket event or timer (block), or only look whether
 * any has come (!block), and wake the coroutines it concerns. Returns
 * false, at once, when nothing is waited for at all: no socket and no timer
 * could ever wake anyone. */
bool hub_poll(bool block);

/* How many times hub_poll() has slept in epoll_wait. */
uint64_t hub_loops(void);

/* Release the epoll instance and the tables once every coroutine ended. */
void hub_close(void);

#endif
