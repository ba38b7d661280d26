/* Chapter 06: small programs written for kernel threads and blocking calls,
 * run on green threads by the patch (linked with -Wl,--wrap). Each one shows
 * one thing the patch keeps, or one thing it cannot patch:
 *
 *   patch_demo threads   join (in any order), pthread_exit, detach, main's
 *                        pthread_exit
 *   patch_demo mutex     a lock held across a park keeps a counter exact;
 *                        relocking is refused; waiters get it in turn
 *   patch_demo cond      a condition wakes its waiter; a timed wait times out
 *                        or is woken in time; signal wakes one waiter,
 *                        broadcast every one
 *   patch_demo fcntl     what fcntl(F_GETFL) shows; asking for O_NONBLOCK
 *   patch_demo setfl     F_SETFL with the flags F_GETFL gave, and O_NONBLOCK
 *                        set then cleared: the read still parks
 *   patch_demo read      a read waits while another green thread writes
 *   patch_demo syscall   the same with syscall(SYS_read): hangs
 *   patch_demo spin      a loop that never yields: hangs
 *   patch_demo yield     the same loop with usleep(0): finishes
 *   patch_demo offload   a blocking read on a worker thread: others run
 *   patch_demo resolve   getaddrinfo on a worker thread */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "offload.h"

static void die(const char *what)
{
	fprintf(stderr, "patch_demo: %s: %s\n", what, strerror(errno));
	exit(EXIT_FAILURE);
}

/* The pthread calls return an error number instead of setting errno. */
static void check(int err, const char *what)
{
	if (err != 0) {
		errno = err;
		die(what);
	}
}

static pthread_t start(void *(*fn)(void *), void *arg)
{
	pthread_t thread;
	check(pthread_create(&thread, NULL, fn, arg), "pthread_create");
	return thread;
}

/* ---- threads ------------------------------------------------------------------ */

static void *returns_42(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)42;
}

/* pthread_exit() from below the thread's function ends the thread there. */
static void give_up(void)
{
	pthread_exit((void *)(intptr_t)7);
}

static void *exits_with_7(void *arg)
{
	(void)arg;
	give_up();
	return NULL;
}

static int detached_ran;

static void *detached(void *arg)
{
	(void)arg;
	usleep(1000);
	detached_ran = 1;
	return NULL;
}

static void *outlives_main(void *arg)
{
	(void)arg;
	usleep(20000);
	printf("a thread ran on after main called pthread_exit\n");
	fflush(stdout);
	return NULL;
}

static void *returns_its_arg(void *arg)
{
	return arg;
}

/* Threads are found by their id wherever they are in the patch's list:
 * joined in an order other than the one they were made in. */
static void join_out_of_order(void)
{
	pthread_t threads[3];
	for (int i = 0; i < 3; i++)
		threads[i] = start(returns_its_arg, (void *)(intptr_t)(i + 1));
	static const int order[] = { 1, 2, 0 };
	printf("joined three threads out of order:");
	for (int i = 0; i < 3; i++) {
		void *result;
		check(pthread_join(threads[order[i]], &result), "pthread_join");
		printf(" %ld", (long)(intptr_t)result);
	}
	printf("\n");
}

static int demo_threads(void)
{
	void *result;
	check(pthread_join(start(returns_42, NULL), &result), "pthread_join");
	printf("joined a thread that returned %ld\n", (long)(intptr_t)result);
	check(pthread_join(start(exits_with_7, NULL), &result), "pthread_join");
	printf("joined a thread that called pthread_exit(%ld)\n", (long)(intptr_t)result);
	join_out_of_order();
	check(pthread_detach(start(detached, NULL)), "pthread_detach");
	while (!detached_ran)
		usleep(1000);
	printf("a detached thread ran\n");
	fflush(stdout);
	pthread_detach(start(outlives_main, NULL));
	pthread_exit(NULL);
}

/* ---- mutex -------------------------------------------------------------------- */

enum { COUNTERS = 20, ROUNDS = 10 };
static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

/* Read, park, write back: without the lock, a thread that parks between
 * the read and the write loses the increments made meanwhile. */
static void *count(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		check(pthread_mutex_lock(&counter_lock), "pthread_mutex_lock");
		long seen = counter;
		usleep(100);
		counter = seen + 1;
		check(pthread_mutex_unlock(&counter_lock), "pthread_mutex_unlock");
	}
	return NULL;
}

/* An error-checking mutex: locking it again is an error with kernel
 * threads too, and every green mutex behaves this way. */
static pthread_mutex_t checked_lock;

static void init_checked_lock(void)
{
	pthread_mutexattr_t attr;
	check(pthread_mutexattr_init(&attr), "pthread_mutexattr_init");
	check(pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK), "pthread_mutexattr_settype");
	check(pthread_mutex_init(&checked_lock, &attr), "pthread_mutex_init");
	pthread_mutexattr_destroy(&attr);
}

/* Threads that queue for a held lock get it in the order they asked. */
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static char turns[8];

static void *take_a_turn(void *arg)
{
	check(pthread_mutex_lock(&turn_lock), "pthread_mutex_lock");
	strncat(turns, arg, sizeof turns - strlen(turns) - 1);
	check(pthread_mutex_unlock(&turn_lock), "pthread_mutex_unlock");
	return NULL;
}

static int demo_mutex(void)
{
	pthread_t threads[COUNTERS];
	for (int i = 0; i < COUNTERS; i++)
		threads[i] = start(count, NULL);
	for (int i = 0; i < COUNTERS; i++)
		check(pthread_join(threads[i], NULL), "pthread_join");
	printf("counter %ld of %d\n", counter, COUNTERS * ROUNDS);

	/* Its owner locking it again would otherwise wait for itself for ever. */
	init_checked_lock();
	check(pthread_mutex_lock(&checked_lock), "pthread_mutex_lock");
	printf("its owner locking it again: %s\n", strerror(pthread_mutex_lock(&checked_lock)));
	check(pthread_mutex_unlock(&checked_lock), "pthread_mutex_unlock");

	check(pthread_mutex_lock(&turn_lock), "pthread_mutex_lock");
	static const char *const names[] = { "a", "b", "c" };
	pthread_t waiting[3];
	for (int i = 0; i < 3; i++) {
		waiting[i] = start(take_a_turn, (void *)names[i]);
		usleep(1000);	/* it runs, and queues for the lock */
	}
	check(pthread_mutex_unlock(&turn_lock), "pthread_mutex_unlock");
	for (int i = 0; i < 3; i++)
		check(pthread_join(waiting[i], NULL), "pthread_join");
	printf("a, b and c queued for the lock, and took it in the order %s\n", turns);
	return EXIT_SUCCESS;
}

/* ---- cond --------------------------------------------------------------------- */

static pthread_mutex_t flag_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flag_set = PTHREAD_COND_INITIALIZER;
static int flag;

static void *set_flag(void *arg)
{
	(void)arg;
	usleep(1000);
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	flag = 1;
	check(pthread_cond_signal(&flag_set), "pthread_cond_signal");
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	return NULL;
}

/* A deadline for pthread_cond_timedwait, ms from now. */
static struct timespec in_ms(long ms)
{
	struct timespec deadline;
	if (clock_gettime(CLOCK_REALTIME, &deadline) < 0)
		die("clock_gettime");
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += ms % 1000 * 1000 * 1000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	return deadline;
}

/* A timed wait that nobody signals, on a thread that then ends: its waiter,
 * on that thread's stack, must have left the condition's queue. */
static void *time_out_and_end(void *arg)
{
	(void)arg;
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	struct timespec deadline = in_ms(50);
	int err = pthread_cond_timedwait(&flag_set, &flag_lock, &deadline);
	printf("timed wait with nobody signalling: %s\n", strerror(err));
	err = pthread_mutex_unlock(&flag_lock);
	if (err == 0)
		printf("the timed wait returned holding the mutex\n");
	else
		printf("the timed wait returned without the mutex: pthread_mutex_unlock: %s\n",
		       strerror(err));
	return NULL;
}

static void *set_flag_soon(void *arg)
{
	int *which = arg;
	usleep(1000);
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	*which = 1;
	check(pthread_cond_signal(&flag_set), "pthread_cond_signal");
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	return NULL;
}

/* Two waiters on one condition. Each waits in a loop, as every caller of
 * pthread_cond_wait must: a wake-up is a hint to look again, and POSIX
 * allows spurious ones. */
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int tickets, took, waiting, passed;
static bool gate_open;

static void *wait_for_a_ticket(void *arg)
{
	(void)arg;
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	waiting++;
	while (tickets == 0)
		check(pthread_cond_wait(&changed, &flag_lock), "pthread_cond_wait");
	tickets--;
	took++;
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	return NULL;
}

static void *wait_at_the_gate(void *arg)
{
	(void)arg;
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	waiting++;
	while (!gate_open)
		check(pthread_cond_wait(&changed, &flag_lock), "pthread_cond_wait");
	passed++;
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	return NULL;
}

/* Wait, for half a second at most, until *value (under flag_lock) is want. */
static void wait_until(const int *value, int want)
{
	for (int tries = 0; tries < 500; tries++) {
		check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
		int now = *value;
		check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
		if (now == want)
			return;
		usleep(1000);
	}
}

/* Give one ticket to whoever waits for it, signal, and let it be taken. */
static void give_a_ticket(int taken_then)
{
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	tickets++;
	check(pthread_cond_signal(&changed), "pthread_cond_signal");
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	wait_until(&took, taken_then);
}

static void two_waiters(void)
{
	pthread_t threads[2];
	for (int i = 0; i < 2; i++)
		threads[i] = start(wait_for_a_ticket, NULL);
	wait_until(&waiting, 2);
	give_a_ticket(1);
	printf("one signal, two waiters: %d took a ticket\n", took);
	give_a_ticket(2);
	printf("a second signal: %d took a ticket in all\n", took);
	for (int i = 0; i < 2; i++)
		check(pthread_join(threads[i], NULL), "pthread_join");

	waiting = 0;
	for (int i = 0; i < 2; i++)
		threads[i] = start(wait_at_the_gate, NULL);
	wait_until(&waiting, 2);
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	gate_open = true;
	check(pthread_cond_broadcast(&changed), "pthread_cond_broadcast");
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	for (int i = 0; i < 2; i++)
		check(pthread_join(threads[i], NULL), "pthread_join");
	printf("one broadcast, two waiters: %d went through\n", passed);
}

static int demo_cond(void)
{
	pthread_t setter = start(set_flag, NULL);
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	while (!flag)
		check(pthread_cond_wait(&flag_set, &flag_lock), "pthread_cond_wait");
	printf("woken with the flag set\n");
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	check(pthread_join(setter, NULL), "pthread_join");

	check(pthread_join(start(time_out_and_end, NULL), NULL), "pthread_join");
	/* Its stack is gone: a waiter it left queued would be read from there. */
	check(pthread_cond_signal(&flag_set), "pthread_cond_signal");
	printf("a signal with nobody waiting is lost\n");

	static int soon;
	setter = start(set_flag_soon, &soon);
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	struct timespec deadline = in_ms(5000);
	int err = 0;
	while (!soon && err == 0)
		err = pthread_cond_timedwait(&flag_set, &flag_lock, &deadline);
	printf("timed wait, signalled in time: %s\n", strerror(err));
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	check(pthread_join(setter, NULL), "pthread_join");

	two_waiters();

	/* pthread_cond_wait releases a mutex the caller holds: an error-checking
	 * one (every green mutex is) the caller does not hold gives EPERM. */
	init_checked_lock();
	printf("waiting without holding the mutex: %s\n",
	       strerror(pthread_cond_wait(&flag_set, &checked_lock)));
	return EXIT_SUCCESS;
}

/* ---- fcntl -------------------------------------------------------------------- */

static void show_flags(const char *what, int fd)
{
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0)
		die("fcntl F_GETFL");
	printf("%s: %s\n", what, flags & O_NONBLOCK ? "O_NONBLOCK" : "blocking");
}

static int demo_fcntl(void)
{
	int sock = socket(AF_INET, SOCK_STREAM, 0);
	int pipefd[2];
	if (sock < 0 || pipe(pipefd) < 0)
		die("socket or pipe");
	show_flags("socket", sock);
	show_flags("pipe", pipefd[0]);
	/* What the kernel itself says about the pipe. */
	char byte;
	if (syscall(SYS_read, pipefd[0], &byte, 1) < 0)
		printf("syscall(SYS_read) on the empty pipe: %s\n", strerror(errno));
	int flags = fcntl(pipefd[0], F_GETFL);
	if (flags < 0 || fcntl(pipefd[0], F_SETFL, flags | O_NONBLOCK) < 0)
		die("fcntl F_SETFL");
	show_flags("pipe after F_SETFL O_NONBLOCK", pipefd[0]);
	/* This read must fail at once. Should it wait instead, with nobody to
	 * write, SIGALRM ends the demo after a second. */
	alarm(1);
	if (read(pipefd[0], &byte, 1) < 0)
		printf("read on the empty pipe: %s\n", strerror(errno));
	alarm(0);
	close(sock);
	close(pipefd[0]);
	close(pipefd[1]);
	return EXIT_SUCCESS;
}

/* ---- read and syscall ------------------------------------------------------------ */

static void *write_a_byte(void *arg)
{
	int fd = *(int *)arg;
	if (write(fd, "x", 1) != 1)
		die("write");
	return NULL;
}

/* Read one byte from a pipe that another green thread writes; raw reads
 * the way the program's code cannot be patched: syscall(SYS_read). */
static int demo_read(int raw)
{
	int pipefd[2];
	/* The raw demo's pipe comes from the kernel directly too: a pipe from
	 * pipe() is non-blocking, and the raw read would fail with EAGAIN. */
	if ((raw ? syscall(SYS_pipe2, pipefd, 0) : pipe(pipefd)) < 0)
		die("pipe");
	pthread_t writer = start(write_a_byte, &pipefd[1]);
	char byte;
	ssize_t got = raw ? syscall(SYS_read, pipefd[0], &byte, 1) : read(pipefd[0], &byte, 1);
	if (got < 0)
		die("read");
	printf("read %zd byte from a green writer\n", got);
	check(pthread_join(writer, NULL), "pthread_join");
	close(pipefd[0]);
	close(pipefd[1]);
	return EXIT_SUCCESS;
}

/* ---- setfl ------------------------------------------------------------------------ */

/* What the kernel itself says about fd's O_NONBLOCK, past the patch. */
static void show_kernel_flags(int fd)
{
	long flags = syscall(SYS_fcntl, fd, F_GETFL);
	if (flags < 0)
		die("syscall(SYS_fcntl)");
	printf("the kernel sees: %s\n", flags & O_NONBLOCK ? "O_NONBLOCK" : "blocking");
	if (!(flags & O_NONBLOCK)) {
		/* A read now would block the hub's only kernel thread, and with
		 * it the green thread that would write: stop here instead. */
		printf("a read would block every green thread: stopping\n");
		exit(EXIT_FAILURE);
	}
}

/* Programs set flags with what F_GETFL gave them, often to restore them;
 * the patch must keep the pipe non-blocking for the hub all the same. */
static int demo_setfl(void)
{
	int pipefd[2];
	if (pipe(pipefd) < 0)
		die("pipe");
	int flags = fcntl(pipefd[0], F_GETFL);
	if (flags < 0 || fcntl(pipefd[0], F_SETFL, flags) < 0)
		die("fcntl");
	show_flags("pipe after F_SETFL with the flags F_GETFL gave", pipefd[0]);
	show_kernel_flags(pipefd[0]);
	if (fcntl(pipefd[0], F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(pipefd[0], F_SETFL, flags & ~O_NONBLOCK) < 0)
		die("fcntl");
	show_flags("pipe after setting O_NONBLOCK and clearing it", pipefd[0]);
	show_kernel_flags(pipefd[0]);
	pthread_t writer = start(write_a_byte, &pipefd[1]);
	char byte;
	ssize_t got = read(pipefd[0], &byte, 1);
	if (got < 0)
		die("read");
	printf("read %zd byte from a green writer after clearing O_NONBLOCK\n", got);
	check(pthread_join(writer, NULL), "pthread_join");
	close(pipefd[0]);
	close(pipefd[1]);
	return EXIT_SUCCESS;
}

/* ---- spin and yield -------------------------------------------------------------- */

static atomic_int stop;

/* It sleeps first: the spinner's usleep(0) must let the hub's timers run
 * too, not only the threads that are runnable. */
static void *stop_the_spinner(void *arg)
{
	(void)arg;
	usleep(10000);
	atomic_store(&stop, 1);
	return NULL;
}

static int demo_spin(int yield)
{
	pthread_t stopper = start(stop_the_spinner, NULL);
	unsigned long spins = 0;
	while (!atomic_load(&stop)) {
		spins++;
		if (yield)
			usleep(0);	/* gevent.sleep(0): let the others run */
	}
	printf("the spinner was stopped by another green thread\n");
	check(pthread_join(stopper, NULL), "pthread_join");
	return EXIT_SUCCESS;
}

/* ---- offload and resolve --------------------------------------------------------- */

static void *blocking_read(void *arg)
{
	static char byte;
	int fd = *(int *)arg;
	/* The pipe came from the kernel directly: this read really blocks, a
	 * worker thread and not the hub. */
	return read(fd, &byte, 1) == 1 ? &byte : NULL;
}

static long threads_now(void)
{
	DIR *dir = opendir("/proc/self/task");
	if (dir == NULL)
		die("opendir /proc/self/task");
	long n = 0;
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL)
		n += entry->d_name[0] != '.';
	closedir(dir);
	return n;
}

static int demo_offload(void)
{
	int pipefd[2];
	if (syscall(SYS_pipe2, pipefd, 0) < 0)
		die("pipe2");
	printf("kernel threads before: %ld\n", threads_now());
	pthread_t writer = start(write_a_byte, &pipefd[1]);
	if (offload_run(blocking_read, &pipefd[0]) == NULL)
		die("offload_run");
	printf("the worker's blocking read got the byte a green thread wrote meanwhile\n");
	printf("kernel threads after: %ld\n", threads_now());
	check(pthread_join(writer, NULL), "pthread_join");
	offload_stop();
	close(pipefd[0]);
	close(pipefd[1]);
	return EXIT_SUCCESS;
}

static int demo_resolve(void)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res;
	int err = offload_getaddrinfo("localhost", "8000", &hints, &res);
	if (err != 0) {
		fprintf(stderr, "patch_demo: getaddrinfo localhost: %s\n", gai_strerror(err));
		return EXIT_FAILURE;
	}
	char host[NI_MAXHOST];
	err = getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof host, NULL, 0, NI_NUMERICHOST);
	freeaddrinfo(res);
	if (err != 0) {
		fprintf(stderr, "patch_demo: getnameinfo: %s\n", gai_strerror(err));
		return EXIT_FAILURE;
	}
	printf("localhost is %s\n", host);
	offload_stop();
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	/* Line by line, so that what a demo printed survives its crash. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *demo = argc == 2 ? argv[1] : "";
	if (strcmp(demo, "threads") == 0)
		return demo_threads();
	if (strcmp(demo, "mutex") == 0)
		return demo_mutex();
	if (strcmp(demo, "cond") == 0)
		return demo_cond();
	if (strcmp(demo, "fcntl") == 0)
		return demo_fcntl();
	if (strcmp(demo, "setfl") == 0)
		return demo_setfl();
	if (strcmp(demo, "read") == 0 || strcmp(demo, "syscall") == 0)
		return demo_read(strcmp(demo, "syscall") == 0);
	if (strcmp(demo, "spin") == 0 || strcmp(demo, "yield") == 0)
		return demo_spin(strcmp(demo, "yield") == 0);
	if (strcmp(demo, "offload") == 0)
		return demo_offload();
	if (strcmp(demo, "resolve") == 0)
		return demo_resolve();
	fprintf(stderr, "usage: patch_demo threads|mutex|cond|fcntl|setfl|read|syscall|spin|yield|"
		"offload|resolve\n");
	return 2;
}
