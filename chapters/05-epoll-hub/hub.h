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
 * fd and direction). Call it only after the operation failed with EAGAIN:
 * fds are registered edge-triggered, so readiness that came before is not
 * reported again. */
int hub_wait_fd(int fd, enum hub_dir dir, int64_t deadline);

/* Park the running coroutine until deadline. 0, or -1 with ECANCELED. */
int hub_sleep_until(int64_t deadline);

/* fd is about to be closed: wake its waiters with EBADF and forget it. */
void hub_forget_fd(int fd);

/* Wait for the next socket event or timer and wake the coroutines it
 * concerns. Returns false, at once, when nothing is waited for at all: no
 * socket and no timer could ever wake anyone. */
bool hub_poll(void);

/* How many times hub_poll() has slept in epoll_wait. */
uint64_t hub_loops(void);

/* Release the epoll instance and the tables once every coroutine ended. */
void hub_close(void);

#endif
