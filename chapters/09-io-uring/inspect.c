/* Chapter 05: looking inside a running server. co_dump() answers "where is
 * my server stuck?": every coroutine, what it waits for, how deep its stack
 * has been. co_watchdog() answers "who is hogging the thread?": a coroutine
 * that runs too long without waiting stops every other one, and only a
 * second thread can notice. */
#include "sched.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"

static const char *state_name(enum co_state state)
{
	switch (state) {
	case CO_RUNNABLE: return "runnable";
	case CO_RUNNING: return "running";
	case CO_WAITING: return "waiting";
	case CO_FINISHED: return "finished";
	}
	return "?";
}

/* How deep the stack has ever been, in bytes: the stack grows down from its
 * top, and a page becomes resident the first time it is touched, so the
 * lowest resident page marks the deepest point so far (page by page).
 * Painting the stack with a pattern would tell it to the byte, but painting
 * touches every page: 64 KiB resident per coroutine instead of 4 or 8. */
static size_t stack_high_water(const struct co *co)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = CO_STACK_SIZE / page;
	unsigned char resident[CO_STACK_SIZE / 4096 + 1];
	if (pages > sizeof resident || mincore(co->stack, CO_STACK_SIZE, resident) < 0)
		return 0;
	for (size_t i = 0; i < pages; i++)
		if (resident[i] & 1)
			return (pages - i) * page;
	return 0;
}

static void describe_wait(const struct co *co, char *text, size_t size)
{
	const struct co_wait *w = &co->wait;
	text[0] = '\0';
	if (co->state != CO_WAITING || w->what == NULL)
		return;
	int len = 0;
	if (w->fd >= 0)
		len = snprintf(text, size, "%s fd %d", w->what, w->fd);
	else if (w->other != 0)
		len = snprintf(text, size, "%s #%llu", w->what, (unsigned long long)w->other);
	else
		len = snprintf(text, size, "%s", w->what);
	if (co->deadline >= 0 && len >= 0 && (size_t)len < size)
		snprintf(text + len, size - (size_t)len, ", due in %lld ms",
			 (long long)(co->deadline - co_now_ms()));
}

void co_dump(FILE *out)
{
	co_dump_first(out, SIZE_MAX);
}

void co_dump_first(FILE *out, size_t most)
{
	fprintf(out, "co: %zu coroutines; the hub (%s) has been to the kernel %llu times",
		co_count(), hub_name() != NULL ? hub_name() : "not open",
		(unsigned long long)hub_loops());
	struct hub_uring_stats ring = hub_uring_stats();
	if (ring.enters > 0)
		fprintf(out, "; %llu io_uring_enter calls submitted %llu requests and reaped %llu "
			"completions", (unsigned long long)ring.enters,
			(unsigned long long)ring.submitted, (unsigned long long)ring.completed);
	fputc('\n', out);
	size_t shown = 0;
	for (const struct co *co = co_all(); co != NULL; co = co->next) {
		if (shown++ == most) {
			fprintf(out, "  ... and %zu more\n", co_count() - most);
			break;
		}
		char wait[96];
		describe_wait(co, wait, sizeof wait);
		fprintf(out, "  #%-5llu %-28s %-8s %-32s stack %zu of %d KiB\n",
			(unsigned long long)co->id, co->name, state_name(co->state), wait,
			stack_high_water(co) / 1024, CO_STACK_SIZE / 1024);
	}
	fflush(out);
}

/* The watchdog thread. It shares nothing with the coroutines but what the
 * hub thread publishes for it (co_switches(), co_running(): atomics) and
 * its own settings. */
struct watchdog {
	long ms;
	FILE *out;
};

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		continue;
}

static void *watch(void *arg)
{
	const struct watchdog *dog = arg;
	uint64_t seen = co_switches();
	int64_t since = co_now_ms();
	bool reported = false;
	for (;;) {
		sleep_ms(dog->ms / 4 > 0 ? dog->ms / 4 : 1);
		uint64_t now_switches = co_switches();
		int64_t now = co_now_ms();
		if (now_switches != seen) {
			seen = now_switches;
			since = now;
			reported = false;
			continue;
		}
		char name[CO_NAME_SIZE];
		co_id hog = co_running(name);
		/* A switch since the count was read: whoever runs now has just
		 * started. */
		if (hog == 0 || reported || now - since < dog->ms || co_switches() != seen)
			continue;
		fprintf(dog->out, "co: watchdog: coroutine #%llu (%s) has run for %lld ms without "
			"waiting; every other coroutine is stuck behind it\n",
			(unsigned long long)hog, name, (long long)(now - since));
		fflush(dog->out);
		reported = true;
	}
	return NULL;
}

int co_watchdog(long ms, FILE *out)
{
	static struct watchdog dog;
	dog = (struct watchdog){ .ms = ms, .out = out };
	/* The thread starts with every signal blocked (it inherits our mask
	 * while we hold them all), so that it never takes one meant for the
	 * coroutines' signalfd. The pthread functions return an error number. */
	sigset_t all, old;
	sigfillset(&all);
	int err = pthread_sigmask(SIG_SETMASK, &all, &old);
	if (err != 0)
		goto fail;
	pthread_attr_t attr;
	err = pthread_attr_init(&attr);
	if (err == 0) {
		err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_t thread;
		if (err == 0)
			err = pthread_create(&thread, &attr, watch, &dog);
		pthread_attr_destroy(&attr);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);	/* cannot fail: valid arguments */
	if (err == 0)
		return 0;
fail:
	errno = err;
	return -1;
}
