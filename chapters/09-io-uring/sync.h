/* Chapter 07: synchronising coroutines on the hub. gevent's Event, Queue,
 * Semaphore and Pool, in C. One thread runs every coroutine and switches
 * only where one waits, so none of these needs a lock: between two waits,
 * a coroutine has the data to itself.
 *
 * Every wait takes a deadline (co_now_ms() time, -1: none) and fails with
 * ETIMEDOUT once it passes, or with ECANCELED when the waiting coroutine is
 * cancelled (co_cancel). Waiters are served first come, first served. */
#ifndef SYNC_H
#define SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "co.h"
#include "waitq.h"

/* ---- Event: a flag that coroutines wait to see set (event.c) ------------ */

struct co_event {
	bool set;
	struct waitq waiters;
};

void co_event_init(struct co_event *ev);

/* Set the flag and wake every waiter. It stays set until co_event_clear(). */
void co_event_set(struct co_event *ev);
void co_event_clear(struct co_event *ev);
bool co_event_is_set(const struct co_event *ev);

/* 0 at once if the flag is set, else wait until it is. -1 with errno
 * ETIMEDOUT or ECANCELED. A waiter woken by co_event_set() returns 0 even if
 * the flag was cleared again before it ran. */
int co_event_wait(struct co_event *ev, int64_t deadline);

/* ---- Channel: a bounded queue of pointers (chan.c) ---------------------- */

struct co_chan {
	void **items;           /* a ring of capacity slots */
	size_t capacity, len, first;
	bool closed;
	struct waitq senders;   /* waiting for room, each with its item */
	struct waitq receivers; /* waiting for an item */
};

/* A channel that holds up to capacity items; 0 makes every send wait for a
 * receiver (a rendezvous). 0, or -1 with errno ENOMEM. */
int co_chan_init(struct co_chan *ch, size_t capacity);

/* Release the ring; nobody may wait on the channel any more. */
void co_chan_free(struct co_chan *ch);

/* Send item, waiting while the channel is full. 0, or -1 with errno EPIPE
 * (closed, before or while waiting: the item was not sent), ETIMEDOUT or
 * ECANCELED. */
int co_chan_send(struct co_chan *ch, void *item, int64_t deadline);

/* Receive the oldest item into *item, waiting while there is none. 0, or -1
 * with errno EPIPE (closed, and every item sent before has been received),
 * ETIMEDOUT or ECANCELED. */
int co_chan_recv(struct co_chan *ch, void **item, int64_t deadline);

/* No more sends: waiting senders fail with EPIPE; receivers get what is
 * left, then EPIPE. */
void co_chan_close(struct co_chan *ch);

/* ---- Semaphore: a count of permits (sem.c) ------------------------------ */

struct co_sem {
	long count;             /* permits free */
	struct waitq waiters;
};

void co_sem_init(struct co_sem *sem, long count);

/* Take a permit, waiting while none is free. 0, or -1 with errno ETIMEDOUT
 * or ECANCELED (and then no permit was taken). */
int co_sem_acquire(struct co_sem *sem, int64_t deadline);

/* Give a permit back: to the first waiter if there is one, else to the
 * count. */
void co_sem_release(struct co_sem *sem);

/* ---- Pool: at most N coroutines at once (pool.c) ------------------------ */

struct pool_member;

struct co_pool {
	struct co_sem slots;
	size_t running;
	struct pool_member *members;
	struct co_event idle;   /* set while nothing runs */
};

void co_pool_init(struct co_pool *pool, long max);

/* Spawn fn(arg) in the pool, first waiting while max of its coroutines run.
 * Returns the new coroutine's id, or 0 with errno ETIMEDOUT, ECANCELED or
 * ENOMEM (and then fn will not run: arg is still the caller's). */
co_id co_pool_spawn(struct co_pool *pool, co_fn *fn, void *arg, int64_t deadline);

/* How many of its coroutines exist. */
size_t co_pool_running(const struct co_pool *pool);

/* Wait until none of its coroutines is left. 0, or -1 with errno ETIMEDOUT
 * or ECANCELED. */
int co_pool_wait(struct co_pool *pool, int64_t deadline);

/* Cancel each of its coroutines (co_cancel). They end once they have
 * unwound; co_pool_wait() tells when. */
void co_pool_cancel(struct co_pool *pool);

#endif
