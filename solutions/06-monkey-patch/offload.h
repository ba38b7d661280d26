/* Chapter 06: the escape hatch for a call that cannot be patched (one that
 * blocks inside a library, or calls the kernel directly): run it on a
 * worker kernel thread, while the green thread that asked parks in the hub
 * and the others go on. gevent's answer is the same: its thread pool
 * (gevent.threadpool, and gevent.get_hub().threadpool.apply). */
#ifndef OFFLOAD_H
#define OFFLOAD_H

#include <netdb.h>

/* Run fn(arg) on a worker thread and return its result; the calling green
 * thread waits parked. Outside a green thread, fn runs right here. fn must
 * not touch the program's green threads, mutexes or condition variables:
 * on a worker thread those are the real, kernel-thread ones. Returns
 * fn's result; NULL with errno set if no worker could take it, or with
 * ECANCELED if the green thread was cancelled (fn has ended by then all the
 * same: arg may be on the caller's stack). */
void *offload_run(void *(*fn)(void *), void *arg);

/* Let the workers finish the jobs queued and end, and wait for them: at the
 * end of a program, so that nothing a worker holds (glibc keeps resolver
 * state per thread) is left behind. Blocks the calling kernel thread. */
void offload_stop(void);

/* getaddrinfo(3) through offload_run(): its own sockets and files block a
 * worker, not the hub. Same arguments and results as getaddrinfo. */
int offload_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
			struct addrinfo **res);

#endif
