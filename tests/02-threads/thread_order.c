/* A shim the chapter 02 tests preload into the server (LD_PRELOAD) to make
 * the rare orders of a threaded program happen every time. Each is allowed by
 * POSIX, so a correct server passes under all of them:
 *
 *   spurious      every other pthread_cond_wait() or pthread_cond_timedwait()
 *                 of each thread (its 1st, 3rd, ...) returns without a wake-up
 *                 ("spurious wakeups ... may occur", pthread_cond_wait(3p));
 *   woken-first   the threads that pthread_cond_signal() or
 *                 pthread_cond_broadcast() woke run before anybody else goes
 *                 on: the waker, at its next pthread_mutex_unlock(), and each
 *                 woken thread once it has decided (waited again, or
 *                 unlocked) wait until every woken thread has decided;
 *   child-first   pthread_create() returns only once the new thread has
 *                 returned from its start routine, or blocks;
 *   fail-create=N the Nth pthread_create() fails with EAGAIN, as it does when
 *                 the system is out of threads.
 *
 * The tests choose with THREAD_ORDER, e.g. THREAD_ORDER="spurious woken-first".
 * Whatever it says, condition variables are this shim's own: a signal wakes
 * the thread that has waited longest, and each wait that sleeps is announced
 * on stderr ("thread_order: 2 threads wait on ..."), so that a test knows
 * when the server is waiting. And a thread whose start routine returns
 * without having freed the argument pthread_create() gave it says so once
 * ("thread_order: ... without freeing"): in the echo server that is a leak.
 * (Not under Valgrind, which replaces this shim's free() with its own, and
 * reports leaks itself.) */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { SETTLE_MS = 2000, CHILD_FIRST_MS = 2000 };

/* What one thread is doing, as far as the other threads need to know. */
struct thread_state {
	unsigned waits;         /* pthread_cond_*wait calls, for "spurious" */
	bool woke_others;       /* since its last unlock, for woken-first */
	bool must_decide;       /* woken, and has not decided yet */
	struct start *start;    /* how this thread was started, if by us */
};

static __thread struct thread_state self __attribute__((tls_model("initial-exec")));

/* A thread blocked in pthread_cond_*wait, in the order they began to. */
struct waiter {
	pthread_cond_t *cond;
	struct thread_state *thread;
	sem_t wake;
	bool woken;
	struct waiter *next;
};

/* How a thread we create starts, shared by it and its creator. */
struct start {
	void *(*routine)(void *);
	void *arg;
	pid_t tid;
	bool running, done;
	bool settling;          /* held in pthread_mutex_unlock by woken-first */
	unsigned settles;       /* how many times it has been */
	bool waiting;           /* in pthread_cond_*wait */
	int refs;
};

/* Guards the waiters, every struct start, every thread_state's must_decide
 * and undecided. Taken with lock() and released with unlock(), which calls
 * the C library's pthread_mutex_unlock(), not this shim's. (A spin lock
 * would do, but Helgrind, which checks the server's locking in make
 * memcheck, reports false errors on spin locks.) */
static pthread_mutex_t big = PTHREAD_MUTEX_INITIALIZER;
static struct waiter *waiters;
static int undecided;           /* woken threads that have not decided */

static bool spurious, woken_first, child_first;
static unsigned fail_create;    /* 0: never */
static unsigned creates;
static bool sees_free;          /* our free() is the one programs call */
static bool told_unfreed;

static int (*real_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static int (*real_unlock)(pthread_mutex_t *);
static void (*real_free)(void *);

static void *own_arg_test(void);

static void *next_definition(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);
	if (fn == NULL) {
		fprintf(stderr, "thread_order: dlsym %s: %s\n", name, dlerror());
		abort();
	}
	return fn;
}

__attribute__((constructor)) static void load(void)
{
	real_create = next_definition("pthread_create");
	real_unlock = next_definition("pthread_mutex_unlock");
	real_free = next_definition("free");
	const char *order = getenv("THREAD_ORDER");
	if (order != NULL) {
		spurious = strstr(order, "spurious") != NULL;
		woken_first = strstr(order, "woken-first") != NULL;
		child_first = strstr(order, "child-first") != NULL;
		const char *fail = strstr(order, "fail-create=");
		if (fail != NULL)
			fail_create = (unsigned)atoi(fail + strlen("fail-create="));
	}
	sees_free = own_arg_test() == NULL;
	fprintf(stderr, "thread_order: loaded into %s: %s%s\n", program_invocation_short_name,
		order != NULL && order[0] != '\0' ? order : "FIFO condition variables only",
		sees_free ? "" : " (free() is replaced: no check of what threads free)");
}

static void lock(void)
{
	pthread_mutex_lock(&big);
}

static void unlock(void)
{
	real_unlock(&big);
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_nsec = us * 1000 };
	nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* This thread began a wait or unlocked a mutex: if it had been woken, it
 * has decided what to do about it. Returns whether it had been. Called with
 * big held. */
static bool decided(void)
{
	if (!self.must_decide)
		return false;
	self.must_decide = false;
	undecided--;
	return true;
}

/* ---- Condition variables ------------------------------------------------- */

/* Wake the first waiter on cond (all of them if all), counting them for
 * woken-first. Called with big held. */
static void wake(pthread_cond_t *cond, bool all)
{
	for (struct waiter *w = waiters; w != NULL; w = w->next) {
		if (w->cond != cond || w->woken)
			continue;
		w->woken = true;
		if (woken_first) {
			w->thread->must_decide = true;
			undecided++;
			self.woke_others = true;
		}
		sem_post(&w->wake);
		if (!all)
			return;
	}
}

int pthread_cond_signal(pthread_cond_t *cond)
{
	lock();
	wake(cond, false);
	unlock();
	return 0;
}

int pthread_cond_broadcast(pthread_cond_t *cond)
{
	lock();
	wake(cond, true);
	unlock();
	return 0;
}

static void unlink_waiter(struct waiter *gone)
{
	for (struct waiter **w = &waiters; *w != NULL; w = &(*w)->next) {
		if (*w == gone) {
			*w = gone->next;
			return;
		}
	}
}

static int wait_on(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline)
{
	if (spurious && self.waits++ % 2 == 0) {
		/* Let the others run, as a real wake-up would, then return. This
		 * is no decision for woken-first: the caller looks again. */
		real_unlock(mutex);
		sched_yield();
		pthread_mutex_lock(mutex);
		return 0;
	}

	struct waiter w = { .cond = cond, .thread = &self };
	sem_init(&w.wake, 0, 0);
	int count = 0;
	lock();
	struct waiter **end = &waiters;
	for (; *end != NULL; end = &(*end)->next)
		count += (*end)->cond == cond;
	*end = &w;
	decided();
	if (self.start != NULL)
		self.start->waiting = true;
	unlock();
	fprintf(stderr, "thread_order: %d thread%s wait%s on %p\n", count + 1, count > 0 ? "s" : "",
		count > 0 ? "" : "s", (void *)cond);

	real_unlock(mutex);
	int rc = 0;
	while ((deadline != NULL ? sem_timedwait(&w.wake, deadline) : sem_wait(&w.wake)) < 0) {
		if (errno == EINTR)
			continue;
		/* Timed out, unless a wake-up came just now. */
		lock();
		if (!w.woken) {
			unlink_waiter(&w);
			rc = ETIMEDOUT;
		}
		unlock();
		if (rc == 0)
			while (sem_wait(&w.wake) < 0)
				continue;
		break;
	}
	if (rc == 0) {
		lock();
		unlink_waiter(&w);
		unlock();
	}
	sem_destroy(&w.wake);
	if (self.start != NULL) {
		lock();
		self.start->waiting = false;
		unlock();
	}
	pthread_mutex_lock(mutex);
	return rc;
}

int pthread_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex)
{
	return wait_on(cond, mutex, NULL);
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *deadline)
{
	return wait_on(cond, mutex, deadline);
}

/* ---- Mutexes: woken-first ------------------------------------------------ */

static void set_settling(bool settling)
{
	if (self.start == NULL)
		return;
	lock();
	self.start->settling = settling;
	self.start->settles += settling;
	unlock();
}

/* Wait until every woken thread has decided, for at most SETTLE_MS. */
static void let_the_woken_decide(void)
{
	set_settling(true);
	long long deadline = now_ms() + SETTLE_MS;
	for (;;) {
		lock();
		bool all = undecided == 0;
		unlock();
		if (all || now_ms() > deadline)
			break;
		sleep_us(50);
	}
	set_settling(false);
}

int pthread_mutex_unlock(pthread_mutex_t *mutex)
{
	int rc = real_unlock(mutex);
	lock();
	bool was_woken = decided();
	bool woke_others = self.woke_others;
	self.woke_others = false;
	unlock();
	if (was_woken || woke_others)
		let_the_woken_decide();
	return rc;
}

/* ---- Threads: child-first, fail-create, and the argument's fate ---------- */

static __thread void *own_arg __attribute__((tls_model("initial-exec")));
static __thread bool own_arg_freed __attribute__((tls_model("initial-exec")));

void free(void *ptr)
{
	if (ptr != NULL && ptr == own_arg)
		own_arg_freed = true;
	if (real_free != NULL)
		real_free(ptr);
}

/* Does a call to free() reach the function above? NULL if it does. The
 * call goes through a volatile pointer: the compiler knows what the C
 * library's free() does, and would take our flag to be still false. */
static void *own_arg_test(void)
{
	void (*volatile call_free)(void *) = free;
	own_arg = malloc(1);
	own_arg_freed = false;
	call_free(own_arg);
	void *missed = own_arg_freed ? NULL : own_arg;
	own_arg = NULL;
	return missed;
}

static void release(struct start *s)
{
	lock();
	bool last = --s->refs == 0;
	unlock();
	if (last)
		real_free(s);
}

static void *trampoline(void *arg)
{
	struct start *s = arg;
	self.start = s;
	lock();
	s->tid = gettid();
	s->running = true;
	unlock();

	own_arg = s->arg;
	own_arg_freed = false;
	void *result = s->routine(s->arg);
	if (sees_free && own_arg != NULL && !own_arg_freed) {
		lock();
		bool tell = !told_unfreed;
		told_unfreed = true;
		unlock();
		if (tell)
			fprintf(stderr, "thread_order: a thread returned from its start routine without "
				"freeing the argument pthread_create() gave it (%p)\n", own_arg);
	}

	lock();
	s->done = true;
	unlock();
	self.start = NULL;
	release(s);
	return result;
}

/* Read /proc/self/task/TID/NAME into buf; false if that fails. */
static bool read_task_file(pid_t tid, const char *name, char *buf, size_t size)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t got = read(fd, buf, size - 1);
	close(fd);
	buf[got > 0 ? got : 0] = '\0';
	return got > 0;
}

/* Is thread tid of this process asleep in a system call (proc(5): state S),
 * and not just for a moment: on a mutex (a futex, proc(5) "syscall"), or in
 * a page fault (state D)? */
static bool is_blocked(pid_t tid)
{
	char text[512];
	if (!read_task_file(tid, "stat", text, sizeof text))
		return false;
	const char *paren = strrchr(text, ')');
	if (paren == NULL || paren[2] != 'S')
		return false;
	long number;
	if (!read_task_file(tid, "syscall", text, sizeof text) || sscanf(text, "%ld", &number) != 1)
		return true;	/* no such file: the state alone must do */
	return number >= 0 && number != SYS_futex;
}

/* child-first: until the new thread has returned, waits on a condition
 * variable, or blocks elsewhere than on a mutex or in woken-first. */
static void wait_for_child(struct start *s)
{
	long long deadline = now_ms() + CHILD_FIRST_MS;
	while (now_ms() < deadline) {
		lock();
		bool done = s->done, waiting = s->waiting, running = s->running;
		bool settling = s->settling;
		unsigned settles = s->settles;
		unlock();
		if (done || waiting)
			return;
		if (running && !settling && is_blocked(s->tid)) {
			/* Blocked, and not in woken-first's sleep in between? */
			lock();
			bool ours = s->settling || s->settles != settles;
			unlock();
			if (!ours)
				return;
		}
		sleep_us(50);
	}
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*routine)(void *), void *arg)
{
	lock();
	unsigned n = ++creates;
	unlock();
	if (n == fail_create)
		return EAGAIN;

	struct start *s = malloc(sizeof *s);
	if (s == NULL)
		return EAGAIN;
	*s = (struct start){ .routine = routine, .arg = arg, .refs = 2 };
	int err = real_create(thread, attr, trampoline, s);
	if (err != 0) {
		real_free(s);
		return err;
	}
	if (child_first)
		wait_for_child(s);
	release(s);
	return 0;
}
