/* Chapter 07: counting semaphores; see sync.h. A released permit goes
 * straight to the first waiter rather than back to the count: otherwise a
 * coroutine that runs before that waiter wakes could take it, and a waiter
 * could wait for ever while others barge past. */
#include <errno.h>

#include "sync.h"

void co_sem_init(struct co_sem *sem, long count)
{
	*sem = (struct co_sem){ .count = count };
}

int co_sem_acquire(struct co_sem *sem, int64_t deadline)
{
	/* EXERCISE sem_acquire: take a permit, or wait in line for one.
	 * If sem->count is above 0, take one (count--) and return 0. Else
	 * wait in sem->waiters (waitq_wait(), what: "semaphore"): when it
	 * returns 0, co_sem_release() has handed you its permit directly, and
	 * the count must not change. Any other result (ETIMEDOUT,
	 * ECANCELED): return -1 with errno set to it.
	 * Hint: the struct waiter lives on your stack; waitq_wait() fills it in.
	 * Tests: semaphore_admits_count_then_blocks,
	 * semaphore_release_wakes_waiters_in_arrival_order,
	 * semaphore_acquire_times_out_and_loses_no_permit,
	 * pool_runs_at_most_n_handlers_at_once,
	 * semaphore_keeps_its_count_when_a_waiter_is_cancelled,
	 * connection_cap_makes_the_next_client_wait_its_turn.
	 */
	if (sem->count > 0) {
		sem->count--;
		return 0;
	}
	struct waiter w = { .item = NULL };
	int result = waitq_wait(&sem->waiters, &w, "semaphore", deadline);
	if (result != 0) {
		errno = result;
		return -1;
	}
	return 0;
	/* STUB: (void)deadline; */
	/* STUB: sem->count--; */
	/* STUB: return 0; */
	/* END sem_acquire */
}

void co_sem_release(struct co_sem *sem)
{
	if (waitq_wake(&sem->waiters, 0) == NULL)
		sem->count++;
}
