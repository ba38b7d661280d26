/* Chapter 09: what hub.c asks of each of its two backends, the epoll hub of
 * chapter 05 (hub_epoll.c) and the io_uring hub (hub_uring.c): the narrow
 * interface between the portable part of the hub (timers, parking, the
 * choice of backend) and the kernel's interface. Only the hub's files
 * include this; the rest of the program sees hub.h. */
#ifndef BACKEND_H
#define BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "hub.h"

/* Each backend has the same five calls:
 *   open()      0, or -1 with errno (nothing printed)
 *   wait_fd()   hub_wait_fd() for the running coroutine
 *   forget_fd() hub_forget_fd()
 *   waiting()   how many coroutines wait for the kernel (not for a timer
 *               alone): while there are some, hub_poll() has a reason to
 *               sleep in the kernel
 *   poll()      submit what there is to submit, wait for events or
 *               completions for at most timeout_ns (-1: for ever; 0: only
 *               look), and wake the coroutines they concern
 *   close()     release everything */
int hub_epoll_open(void);
int hub_epoll_wait_fd(int fd, enum hub_dir dir, int64_t deadline);
void hub_epoll_forget_fd(int fd);
size_t hub_epoll_waiting(void);
void hub_epoll_poll(int64_t timeout_ns);
void hub_epoll_close(void);

int hub_uring_open(void);
int hub_uring_wait_fd(int fd, enum hub_dir dir, int64_t deadline);
void hub_uring_forget_fd(int fd);
size_t hub_uring_waiting(void);
void hub_uring_poll(int64_t timeout_ns);
void hub_uring_close(void);

#endif
