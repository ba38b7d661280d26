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
}

void co_sem_release(struct co_sem *sem)
{
	if (waitq_wake(&sem->waiters, 0) == NULL)
		sem->count++;
}
