/* Chapter 06: the thread-pool escape hatch; see offload.h. A few worker
 * kernel threads take jobs from a queue; each job carries an eventfd that
 * the worker writes when the job is done, and that the asking green thread
 * waits on in the hub, like any socket. Every pthread call here is the real
 * one (REAL): the queue is shared by real kernel threads. */
#include "offload.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "co.h"
#include "hub.h"
#include "patch.h"

PATCH_REAL(pthread_create);
PATCH_REAL(pthread_mutex_lock);
PATCH_REAL(pthread_mutex_unlock);
PATCH_REAL(pthread_cond_wait);
PATCH_REAL(pthread_cond_signal);
PATCH_REAL(pthread_cond_broadcast);
PATCH_REAL(pthread_join);

/* gevent's default pool has 10 threads; a course server needs few. */
enum { OFFLOAD_WORKERS = 4 };

/* On the asking green thread's stack: it waits until done_fd is written. */
struct job {
	void *(*fn)(void *);
	void *arg;
	void *result;
	int done_fd;
	struct job *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t ready;   /* a job was queued, or the pool is stopping */
	struct job *first, *last;
	int queued;             /* jobs on the queue, not yet taken */
	pthread_t threads[OFFLOAD_WORKERS];
	int workers, idle;
	bool stopping;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER };

/* The next job, or NULL once the pool is stopping and the queue empty. */
static struct job *take_job(void)
{
	REAL(pthread_mutex_lock)(&pool.lock);
	pool.idle++;
	while (pool.first == NULL && !pool.stopping)
		REAL(pthread_cond_wait)(&pool.ready, &pool.lock);
	pool.idle--;
	struct job *job = pool.first;
	if (job != NULL) {
		pool.first = job->next;
		if (pool.first == NULL)
			pool.last = NULL;
		pool.queued--;
	}
	REAL(pthread_mutex_unlock)(&pool.lock);
	return job;
}

static void *worker(void *arg)
{
	(void)arg;
	struct job *job;
	while ((job = take_job()) != NULL) {
		job->result = job->fn(job->arg);
		/* After this write the job's stack may be gone: touch it no more.
		 * eventfd(2): a write of 1 to a fresh counter cannot fail. */
		eventfd_write(job->done_fd, 1);
	}
	return NULL;
}

/* One more worker, with every signal blocked so that signals stay with the
 * hub's thread (and its signalfd). Called with pool.lock held. */
static int add_worker(void)
{
	sigset_t all, old;
	sigfillset(&all);
	int err = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (err != 0)
		return err;
	err = REAL(pthread_create)(&pool.threads[pool.workers], NULL, worker, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);	/* cannot fail: valid arguments */
	if (err == 0)
		pool.workers++;
	return err;
}

/* Queue job, starting a worker if the idle ones are all spoken for by the
 * jobs queued before it and the pool may grow: a burst of jobs gets as
 * many workers as it needs, up to the pool's size. 0, or an error number
 * when there is no worker at all. */
static int submit(struct job *job)
{
	REAL(pthread_mutex_lock)(&pool.lock);
	int err = 0;
	if (pool.queued >= pool.idle && pool.workers < OFFLOAD_WORKERS)
		err = add_worker();
	if (pool.workers > 0) {
		err = 0;
		job->next = NULL;
		if (pool.last != NULL)
			pool.last->next = job;
		else
			pool.first = job;
		pool.last = job;
		pool.queued++;
		REAL(pthread_cond_signal)(&pool.ready);
	}
	REAL(pthread_mutex_unlock)(&pool.lock);
	return err;
}

void *offload_run(void *(*fn)(void *), void *arg)
{
	if (!patch_can_park())
		return fn(arg);
	struct job job = { .fn = fn, .arg = arg, .done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) };
	if (job.done_fd < 0)
		return NULL;
	int err = submit(&job);
	if (err != 0) {
		close(job.done_fd);
		errno = err;
		return NULL;
	}
	/* Park until the worker is done. The job and fn's argument live on this
	 * stack, so this thread must not go on before the worker has finished,
	 * even cancelled (a cancelled thread cannot park any more): then it
	 * yields, round after round, while the hub serves the others, where a
	 * read that blocked would stop them all. */
	bool cancelled = hub_wait_fd(job.done_fd, HUB_READ, -1) < 0 && errno == ECANCELED;
	eventfd_t done;
	while (eventfd_read(job.done_fd, &done) < 0)
		co_yield();
	close(job.done_fd);
	if (cancelled) {
		errno = ECANCELED;
		return NULL;
	}
	return job.result;
}

void offload_stop(void)
{
	REAL(pthread_mutex_lock)(&pool.lock);
	pool.stopping = true;
	REAL(pthread_cond_broadcast)(&pool.ready);
	REAL(pthread_mutex_unlock)(&pool.lock);
	for (int i = 0; i < pool.workers; i++)
		REAL(pthread_join)(pool.threads[i], NULL);
	pool.workers = 0;
	pool.stopping = false;
}

struct lookup {
	const char *node, *service;
	const struct addrinfo *hints;
	struct addrinfo **res;
	int result;
};

static void *lookup(void *arg)
{
	struct lookup *l = arg;
	l->result = getaddrinfo(l->node, l->service, l->hints, l->res);
	return l;
}

int offload_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
			struct addrinfo **res)
{
	struct lookup l = { node, service, hints, res, 0 };
	return offload_run(lookup, &l) != NULL ? l.result : EAI_SYSTEM;
}
