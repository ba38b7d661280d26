/* A shim preloaded into chapter 08's server by test_multicore: every thread
 * the server creates sleeps LATE_MS (stretched by TH_TIME_SCALE) before it
 * starts, as a new thread on a loaded machine may. A server that says it
 * listens before its hub threads are ready then says so while none is. */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

enum { LATE_MS = 200 };

struct start {
	void *(*fn)(void *);
	void *arg;
};

static void *start_late(void *arg)
{
	struct start start = *(struct start *)arg;
	free(arg);
	const char *scale = getenv("TH_TIME_SCALE");
	long ms = LATE_MS * (scale != NULL && atol(scale) > 1 ? atol(scale) : 1);
	struct timespec left = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };
	while (nanosleep(&left, &left) < 0 && errno == EINTR)
		continue;
	return start.fn(start.arg);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
	if (real == NULL)
		real = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))
			dlsym(RTLD_NEXT, "pthread_create");
	if (real == NULL)
		return ENOSYS;
	struct start *start = malloc(sizeof *start);
	if (start == NULL)
		return EAGAIN;
	*start = (struct start){ fn, arg };
	int err = real(thread, attr, start_late, start);
	if (err != 0)
		free(start);
	return err;
}
