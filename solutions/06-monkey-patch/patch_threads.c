/* Chapter 06: the patched thread calls. A pthread becomes a coroutine
 * (co_spawn), and its mutexes and condition variables become queues of
 * parked coroutines kept inside the program's own pthread_mutex_t and
 * pthread_cond_t, whose all-zero static initializers are valid empty ones.
 * Off the hub (a worker thread, or before main runs) the real calls run. */
#define _GNU_SOURCE	/* pthread_mutex_clocklock(), pthread_cond_clockwait() */

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "patch.h"
#include "sched.h"

PATCH_REAL(pthread_create);
PATCH_REAL(pthread_join);
PATCH_REAL(pthread_detach);
PATCH_REAL(pthread_exit);
PATCH_REAL(pthread_self);
PATCH_REAL(pthread_mutex_init);
PATCH_REAL(pthread_mutex_destroy);
PATCH_REAL(pthread_mutex_lock);
PATCH_REAL(pthread_mutex_trylock);
PATCH_REAL(pthread_mutex_timedlock);
PATCH_REAL(pthread_mutex_clocklock);
PATCH_REAL(pthread_mutex_unlock);
PATCH_REAL(pthread_cond_init);
PATCH_REAL(pthread_cond_destroy);
PATCH_REAL(pthread_cond_wait);
PATCH_REAL(pthread_cond_timedwait);
PATCH_REAL(pthread_cond_clockwait);
PATCH_REAL(pthread_cond_signal);
PATCH_REAL(pthread_cond_broadcast);
PATCH_REAL(sigwait);

/* ---- Wait queues ----------------------------------------------------------- */

/* A green thread waiting for a mutex or a condition: on its own stack, for
 * as long as it waits, so that queueing allocates nothing. */
struct waiter {
	struct co *co;
	struct waiter *next;
	bool woken;             /* by unlock or signal, not by a timeout */
};

struct queue {
	struct waiter *first, *last;
};

static void enqueue(struct queue *q, struct waiter *w)
{
	w->next = NULL;
	if (q->last != NULL)
		q->last->next = w;
	else
		q->first = w;
	q->last = w;
}

static struct waiter *dequeue(struct queue *q)
{
	struct waiter *w = q->first;
	if (w != NULL) {
		q->first = w->next;
		if (q->first == NULL)
			q->last = NULL;
	}
	return w;
}

/* Take w out wherever it is: a timed-out waiter leaves early. */
static void unqueue(struct queue *q, struct waiter *w)
{
	struct waiter *prev = NULL;
	for (struct waiter *at = q->first; at != NULL; prev = at, at = at->next) {
		if (at != w)
			continue;
		if (prev != NULL)
			prev->next = w->next;
		else
			q->first = w->next;
		if (q->last == w)
			q->last = prev;
		return;
	}
}

/* Park the running green thread, described as `what` in co_dump(). */
static int park(const char *what)
{
	co_current()->wait = (struct co_wait){ .what = what, .fd = -1 };
	return co_park();
}

/* Park until woken or until deadline (-1: none); the waiter's `woken` tells
 * which, so a wait that timed out must be unqueued. 0, or an error number
 * (ECANCELED). */
static int park_until(const char *what, int64_t deadline)
{
	if (deadline < 0)
		return park(what);
	return hub_sleep_until(deadline) < 0 ? errno : 0;
}

/* Wake a queued waiter: by unlock or signal, not by a timeout. */
static void wake(struct waiter *w)
{
	w->woken = true;
	co_wake(w->co, 0);
}

/* ---- Threads ---------------------------------------------------------------- */

/* A pthread run as a coroutine. pthread_exit() unwinds to `exit` with
 * longjmp: up its own stack, which is allowed (longjmp(3)). */
struct thread {
	co_id id;
	void *(*fn)(void *);
	void *arg;
	void *result;
	bool detached, ended;
	struct co *joiner;
	jmp_buf exit;
	struct thread *prev, *next;
};

/* Live threads, and ended ones nobody has joined yet. Found by a walk:
 * only join, detach and exit look a thread up. */
static struct thread *threads;

static struct thread *find_thread(co_id id)
{
	for (struct thread *t = threads; t != NULL; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

static void forget_thread(struct thread *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		threads = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	free(t);
}

static void run_thread(void *arg)
{
	struct thread *t = arg;
	if (setjmp(t->exit) == 0)
		t->result = t->fn(t->arg);
	t->ended = true;
	if (t->detached)
		forget_thread(t);
	else if (t->joiner != NULL)
		co_wake(t->joiner, 0);
}

/* Start fn(arg) as a green thread; its id in *id. 0 or an error number. */
static int start_thread(void *(*fn)(void *), void *arg, bool detached, co_id *id)
{
	/* EXERCISE spawn_thread: a pthread becomes a coroutine.
	 * Allocate a struct thread (calloc), fill in fn, arg and detached,
	 * and link it at the head of the threads list (prev/next). Start it
	 * with co_spawn(run_thread, t), which returns its id (0 when out of
	 * memory: unlink and free it, return EAGAIN as pthread_create does);
	 * keep the id in t->id and in *id.
	 * Hint: the coroutine runs only after the caller parks or yields, so
	 * t->id is set before run_thread() can look at it.
	 * Tests: join_returns_the_thread_value, serves_ten_thousand_clients_on_one_thread,
	 * preloaded_server_survives_short_reads_and_writes, the shared echo suites, and those
	 * of what cannot be patched: raw_syscall_read_blocks_every_green_thread,
	 * spinning_thread_starves_the_others, yielding_spinner_lets_the_others_run,
	 * offload_lets_others_run_during_a_blocking_call, offload_resolves_a_name.
	 */
	struct thread *t = calloc(1, sizeof *t);
	if (t == NULL)
		return EAGAIN;
	t->fn = fn;
	t->arg = arg;
	t->detached = detached;
	t->next = threads;
	if (threads != NULL)
		threads->prev = t;
	threads = t;
	t->id = co_spawn(run_thread, t);
	if (t->id == 0) {
		forget_thread(t);
		return EAGAIN;
	}
	*id = t->id;
	return 0;
	/* STUB: (void)fn; (void)arg; (void)detached; (void)id; (void)run_thread; */
	/* STUB: return ENOSYS; */
	/* END spawn_thread */
}

int PATCHED(pthread_create)(pthread_t *thread, const pthread_attr_t *attr,
			    void *(*fn)(void *), void *arg)
{
	if (!patch_can_park())
		return REAL(pthread_create)(thread, attr, fn, arg);
	/* Of the attributes only the detach state means anything here: every
	 * green thread gets the hub's CO_STACK_SIZE stack. */
	int state = PTHREAD_CREATE_JOINABLE;
	if (attr != NULL && pthread_attr_getdetachstate(attr, &state) != 0)
		return EINVAL;
	co_id id;
	int err = start_thread(fn, arg, state == PTHREAD_CREATE_DETACHED, &id);
	if (err == 0)
		*thread = (pthread_t)id;
	return err;
}

int PATCHED(pthread_join)(pthread_t thread, void **result)
{
	if (!patch_can_park())
		return REAL(pthread_join)(thread, result);
	struct thread *t = find_thread((co_id)thread);
	if (t == NULL)
		return ESRCH;
	if (t->detached || t->joiner != NULL)
		return EINVAL;
	if (t->id == co_self())
		return EDEADLK;
	if (!t->ended) {
		t->joiner = co_current();
		int err = park("join");
		if (err != 0) {
			t->joiner = NULL;
			return err;
		}
	}
	if (result != NULL)
		*result = t->result;
	forget_thread(t);
	return 0;
}

int PATCHED(pthread_detach)(pthread_t thread)
{
	if (!patch_can_park())
		return REAL(pthread_detach)(thread);
	struct thread *t = find_thread((co_id)thread);
	if (t == NULL)
		return ESRCH;
	if (t->detached)
		return EINVAL;
	if (t->ended)
		forget_thread(t);
	else
		t->detached = true;
	return 0;
}

void PATCHED(pthread_exit)(void *result)
{
	struct thread *t = patch_can_park() ? find_thread(co_self()) : NULL;
	if (t == NULL)
		REAL(pthread_exit)(result);
	t->result = result;
	longjmp(t->exit, 1);
}

pthread_t PATCHED(pthread_self)(void)
{
	return patch_can_park() ? (pthread_t)co_self() : REAL(pthread_self)();
}

/* ---- Mutexes ---------------------------------------------------------------- */

/* co_now_ms() time at which the clock reaches abstime, rounded up. */
static int64_t deadline_of(clockid_t clock, const struct timespec *abstime)
{
	struct timespec now;
	if (clock_gettime(clock, &now) < 0)
		return co_now_ms();
	int64_t left = (int64_t)(abstime->tv_sec - now.tv_sec) * 1000 +
		       (abstime->tv_nsec - now.tv_nsec + 999999) / 1000000;
	return co_deadline_after(left > 0 ? left : 0);
}


/* Kept inside the program's pthread_mutex_t, around glibc's __kind field:
 * all zero is an unlocked normal mutex, and the static initializers
 * PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP and
 * PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP write only the type, there. */
struct green_mutex {
	co_id owner;            /* 0: unlocked */
	unsigned depth;         /* locks its owner holds (more than 1: recursive) */
	unsigned unused;
	int kind;               /* glibc's __kind; the type in its low 2 bits */
	int unused_too;
	struct queue waiting;
};
_Static_assert(sizeof(struct green_mutex) <= sizeof(pthread_mutex_t),
	       "a green mutex must fit in a pthread_mutex_t");
_Static_assert(offsetof(struct green_mutex, kind) == offsetof(pthread_mutex_t, __data.__kind),
	       "a green mutex keeps the type where glibc's initializers put it");
_Static_assert(sizeof(co_id) <= sizeof(pthread_t), "a pthread_t must hold a co_id");

static struct green_mutex *green_mutex(pthread_mutex_t *m)
{
	return (struct green_mutex *)(void *)m;
}

/* A recursive mutex may be locked again by its owner; every other type
 * behaves as an error-checking one (a normal mutex locked again by its owner
 * would hang for ever: EDEADLK is kinder, and allowed). */
static bool recursive(const struct green_mutex *gm)
{
	return (gm->kind & 3) == PTHREAD_MUTEX_RECURSIVE;
}

int PATCHED(pthread_mutex_init)(pthread_mutex_t *m, const pthread_mutexattr_t *attr)
{
	if (!patch_can_park())
		return REAL(pthread_mutex_init)(m, attr);
	int type = PTHREAD_MUTEX_DEFAULT;
	if (attr != NULL && pthread_mutexattr_gettype(attr, &type) != 0)
		return EINVAL;
	*green_mutex(m) = (struct green_mutex){ .kind = type };
	return 0;
}

int PATCHED(pthread_mutex_destroy)(pthread_mutex_t *m)
{
	if (!patch_can_park())
		return REAL(pthread_mutex_destroy)(m);
	return green_mutex(m)->owner != 0 ? EBUSY : 0;
}

int PATCHED(pthread_mutex_trylock)(pthread_mutex_t *m)
{
	if (!patch_can_park())
		return REAL(pthread_mutex_trylock)(m);
	struct green_mutex *gm = green_mutex(m);
	if (gm->owner == co_self() && recursive(gm)) {
		gm->depth++;
		return 0;
	}
	if (gm->owner != 0)
		return EBUSY;
	gm->owner = co_self();
	gm->depth = 1;
	return 0;
}

/* pthread_mutex_lock, with a deadline (-1: none). */
static int mutex_lock(pthread_mutex_t *m, int64_t deadline)
{
	/* EXERCISE mutex_lock: take the mutex, or queue for it and park.
	 * gm->owner 0: take it (owner = co_self(), depth 1) and return 0.
	 * Held by the caller itself: a recursive() mutex counts one more lock
	 * (depth++) and returns 0; any other returns EDEADLK (a kernel thread
	 * would hang for ever). Else put a struct waiter for co_current() on
	 * gm->waiting (enqueue), and park_until("mutex", deadline). Woken
	 * (w.woken): return 0, the unlocking thread has already made us the
	 * owner, so nobody can take the mutex in between. Not woken (the
	 * deadline passed, or an error such as ECANCELED): take the waiter out
	 * (unqueue) and return the error, or ETIMEDOUT.
	 * Hint: no loop and no test-and-set: one kernel thread, no preemption,
	 * so nothing can run between reading owner and writing it.
	 * Tests: mutex_keeps_a_counter_exact_across_parks,
	 * relocking_an_owned_mutex_fails_with_edeadlk,
	 * mutex_goes_to_its_waiters_first_come_first_served, and the shared echo suites
	 * (chapter 02's server counts its handlers under a mutex).
	 */
	struct green_mutex *gm = green_mutex(m);
	if (gm->owner == 0) {
		gm->owner = co_self();
		gm->depth = 1;
		return 0;
	}
	if (gm->owner == co_self()) {
		if (!recursive(gm))
			return EDEADLK;
		gm->depth++;
		return 0;
	}
	struct waiter w = { .co = co_current() };
	enqueue(&gm->waiting, &w);
	int err = park_until("mutex", deadline);
	if (w.woken)
		return 0;
	unqueue(&gm->waiting, &w);
	return err != 0 ? err : ETIMEDOUT;
	/* STUB: (void)m; (void)deadline; (void)recursive; (void)park_until; */
	/* STUB: return ENOSYS; */
	/* END mutex_lock */
}

int PATCHED(pthread_mutex_lock)(pthread_mutex_t *m)
{
	if (!patch_can_park())
		return REAL(pthread_mutex_lock)(m);
	return mutex_lock(m, -1);
}

/* A timed lock that waited in the kernel would stop every green thread for
 * its whole timeout: these park instead, as C++'s timed_mutex needs. */
int PATCHED(pthread_mutex_timedlock)(pthread_mutex_t *m, const struct timespec *abstime)
{
	if (!patch_can_park())
		return REAL(pthread_mutex_timedlock)(m, abstime);
	if (abstime->tv_nsec < 0 || abstime->tv_nsec > 999999999)
		return EINVAL;
	return mutex_lock(m, deadline_of(CLOCK_REALTIME, abstime));
}

int PATCHED(pthread_mutex_clocklock)(pthread_mutex_t *m, clockid_t clock,
				     const struct timespec *abstime)
{
	if (!patch_can_park())
		return REAL(pthread_mutex_clocklock)(m, clock, abstime);
	if (abstime->tv_nsec < 0 || abstime->tv_nsec > 999999999)
		return EINVAL;
	return mutex_lock(m, deadline_of(clock, abstime));
}

static int mutex_unlock(pthread_mutex_t *m)
{
	struct green_mutex *gm = green_mutex(m);
	if (gm->owner != co_self())
		return EPERM;
	if (--gm->depth > 0)
		return 0;	/* a recursive mutex, still held */
	/* Hand the mutex straight to the first waiter: first come, first
	 * served, and no waiter wakes only to find it taken again. */
	struct waiter *next = dequeue(&gm->waiting);
	gm->owner = next != NULL ? next->co->id : 0;
	gm->depth = next != NULL ? 1 : 0;
	if (next != NULL)
		wake(next);
	return 0;
}

int PATCHED(pthread_mutex_unlock)(pthread_mutex_t *m)
{
	if (!patch_can_park())
		return REAL(pthread_mutex_unlock)(m);
	return mutex_unlock(m);
}

/* ---- Condition variables ----------------------------------------------------- */

/* Kept inside the program's pthread_cond_t: all zero is no waiters, timed
 * waits on CLOCK_REALTIME (pthread_cond_init may choose another clock). */
struct green_cond {
	struct queue waiting;
	clockid_t clock;
};
_Static_assert(sizeof(struct green_cond) <= sizeof(pthread_cond_t),
	       "a green condition variable must fit in a pthread_cond_t");

static struct green_cond *green_cond(pthread_cond_t *c)
{
	return (struct green_cond *)(void *)c;
}

int PATCHED(pthread_cond_init)(pthread_cond_t *c, const pthread_condattr_t *attr)
{
	if (!patch_can_park())
		return REAL(pthread_cond_init)(c, attr);
	clockid_t clock = CLOCK_REALTIME;
	if (attr != NULL && pthread_condattr_getclock(attr, &clock) != 0)
		return EINVAL;
	*green_cond(c) = (struct green_cond){ .clock = clock };
	return 0;
}

int PATCHED(pthread_cond_destroy)(pthread_cond_t *c)
{
	if (!patch_can_park())
		return REAL(pthread_cond_destroy)(c);
	return green_cond(c)->waiting.first != NULL ? EBUSY : 0;
}

/* pthread_cond_wait, with a deadline (-1: none). */
static int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline)
{
	/* EXERCISE cond_wait: release the mutex, park until signalled, relock.
	 * Fail with EPERM unless the caller owns m (green_mutex(m)->owner).
	 * Queue a struct waiter for co_current() on gc->waiting, unlock m
	 * with mutex_unlock(), then park_until("cond", deadline), which returns
	 * 0 whether the deadline passed or somebody woke us early. w.woken (set
	 * by signal and broadcast) tells the two apart: not woken means timed
	 * out, so take the waiter off the queue (unqueue) and answer
	 * ETIMEDOUT. Either way, take m back with mutex_lock(m, -1)
	 * before returning: pthread_cond_wait(3) returns holding it.
	 * Hint: queue before unlocking. Unlocking can run no one (no
	 * preemption), but the order is the one that is safe with threads.
	 * Tests: cond_wakes_a_waiter_and_times_out, timed_out_wait_returns_holding_the_mutex,
	 * timed_out_waiter_leaves_the_queue, timed_wait_signalled_in_time_succeeds,
	 * signal_wakes_one_waiter_and_broadcast_wakes_both,
	 * cond_wait_without_the_mutex_fails_with_eperm.
	 */
	struct green_cond *gc = green_cond(c);
	if (green_mutex(m)->owner != co_self())
		return EPERM;
	struct waiter w = { .co = co_current() };
	enqueue(&gc->waiting, &w);
	mutex_unlock(m);
	int err = park_until("cond", deadline);
	if (!w.woken) {
		unqueue(&gc->waiting, &w);
		if (err == 0)
			err = ETIMEDOUT;
	}
	int relock = mutex_lock(m, -1);
	return err != 0 ? err : relock;
	/* STUB: (void)c; (void)m; (void)deadline; (void)enqueue; (void)unqueue; */
	/* STUB: return 0; */
	/* END cond_wait */
}

int PATCHED(pthread_cond_wait)(pthread_cond_t *c, pthread_mutex_t *m)
{
	if (!patch_can_park())
		return REAL(pthread_cond_wait)(c, m);
	return cond_wait(c, m, -1);
}

int PATCHED(pthread_cond_timedwait)(pthread_cond_t *c, pthread_mutex_t *m,
				    const struct timespec *abstime)
{
	if (!patch_can_park())
		return REAL(pthread_cond_timedwait)(c, m, abstime);
	if (abstime->tv_nsec < 0 || abstime->tv_nsec > 999999999)
		return EINVAL;
	return cond_wait(c, m, deadline_of(green_cond(c)->clock, abstime));
}

int PATCHED(pthread_cond_clockwait)(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clock,
				    const struct timespec *abstime)
{
	if (!patch_can_park())
		return REAL(pthread_cond_clockwait)(c, m, clock, abstime);
	if (abstime->tv_nsec < 0 || abstime->tv_nsec > 999999999)
		return EINVAL;
	return cond_wait(c, m, deadline_of(clock, abstime));
}

int PATCHED(pthread_cond_signal)(pthread_cond_t *c)
{
	if (!patch_can_park())
		return REAL(pthread_cond_signal)(c);
	struct waiter *w = dequeue(&green_cond(c)->waiting);
	if (w != NULL)
		wake(w);
	return 0;
}

int PATCHED(pthread_cond_broadcast)(pthread_cond_t *c)
{
	if (!patch_can_park())
		return REAL(pthread_cond_broadcast)(c);
	struct waiter *w;
	while ((w = dequeue(&green_cond(c)->waiting)) != NULL)
		wake(w);
	return 0;
}

/* ---- Signals ------------------------------------------------------------------ */

/* sigwait(3) for a green thread: the signals are blocked (sigwait requires
 * it), so they stay pending, and a signalfd turns "one is pending" into a
 * readable fd that the hub can wait on. The signalfd is made before main
 * runs, and sigwait only changes its mask: a server short of descriptors
 * (EMFILE) must still hear SIGTERM. One green thread may wait at a time. */
static int signal_fd = -1;

int PATCHED(sigwait)(const sigset_t *set, int *signo)
{
	if (!patch_can_park() || signal_fd < 0)
		return REAL(sigwait)(set, signo);
	if (signalfd(signal_fd, set, 0) < 0)
		return errno;
	struct signalfd_siginfo info;
	ssize_t got;
	while ((got = read(signal_fd, &info, sizeof info)) < 0 && errno == EAGAIN)
		if (hub_wait_fd(signal_fd, HUB_READ, -1) < 0)
			return errno;
	if (got != (ssize_t)sizeof info)
		return got < 0 ? errno : EIO;
	*signo = (int)info.ssi_signo;
	return 0;
}

/* The program's main, as the first green thread: when it returns, the
 * process exits with its status; pthread_exit() in main ends main alone,
 * and the process ends when the last thread does, as with kernel threads. */
struct program {
	int (*main_fn)(int, char **, char **);
	int argc;
	char **argv, **envp;
};

static void *run_main(void *arg)
{
	const struct program *p = arg;
	exit(p->main_fn(p->argc, p->argv, p->envp));
}

int patch_start_main(int (*main_fn)(int, char **, char **), int argc, char **argv, char **envp)
{
	static struct program program;
	program = (struct program){ main_fn, argc, argv, envp };
	sigset_t none;
	sigemptyset(&none);
	signal_fd = signalfd(-1, &none, SFD_NONBLOCK | SFD_CLOEXEC);
	if (signal_fd < 0)
		return -1;
	co_id id;
	if (start_thread(run_main, &program, true, &id) != 0)
		return -1;
	return 0;
}
