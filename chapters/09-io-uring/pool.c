/* Chapter 07: pools; see sync.h. A semaphore with max permits bounds the
 * coroutines; each member takes a permit before it is spawned and gives it
 * back as it ends, whichever way its function ended. */
#include <errno.h>
#include <stdlib.h>

#include "sync.h"

/* A coroutine of the pool, known to it so that co_pool_cancel() can find
 * it. Freed by the coroutine itself as it ends. */
struct pool_member {
	struct co_pool *pool;
	co_fn *fn;
	void *arg;
	co_id id;
	struct pool_member *prev, *next;
};

void co_pool_init(struct co_pool *pool, long max)
{
	*pool = (struct co_pool){ .running = 0 };
	co_sem_init(&pool->slots, max);
	co_event_init(&pool->idle);
	co_event_set(&pool->idle);
}

static void leave(struct co_pool *pool, struct pool_member *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		pool->members = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	free(m);
	if (--pool->running == 0)
		co_event_set(&pool->idle);
	co_sem_release(&pool->slots);
}

/* Every pool coroutine starts here. */
static void run_member(void *arg)
{
	struct pool_member *m = arg;
	m->fn(m->arg);
	leave(m->pool, m);
}

co_id co_pool_spawn(struct co_pool *pool, co_fn *fn, void *arg, int64_t deadline)
{
	if (co_sem_acquire(&pool->slots, deadline) < 0)
		return 0;
	struct pool_member *m = malloc(sizeof *m);
	co_id id = m != NULL ? co_spawn(run_member, m) : 0;
	if (id == 0) {
		free(m);
		co_sem_release(&pool->slots);
		errno = ENOMEM;
		return 0;
	}
	*m = (struct pool_member){ .pool = pool, .fn = fn, .arg = arg, .id = id,
				   .next = pool->members };
	if (pool->members != NULL)
		pool->members->prev = m;
	pool->members = m;
	pool->running++;
	co_event_clear(&pool->idle);
	return id;
}

size_t co_pool_running(const struct co_pool *pool)
{
	return pool->running;
}

int co_pool_wait(struct co_pool *pool, int64_t deadline)
{
	return co_event_wait(&pool->idle, deadline);
}

void co_pool_cancel(struct co_pool *pool)
{
	for (struct pool_member *m = pool->members; m != NULL; m = m->next)
		co_cancel(m->id);
}
