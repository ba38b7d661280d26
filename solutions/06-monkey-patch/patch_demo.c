/* Chapter 06: small programs written for kernel threads and blocking calls,
 * run on green threads by the patch (linked with -Wl,--wrap). Each one shows
 * one thing the patch keeps, or one thing it cannot patch:
 *
 *   patch_demo threads   join, pthread_exit, detach, main's pthread_exit
 *   patch_demo mutex     a lock held across a park keeps a counter exact
 *   patch_demo cond      a condition wakes its waiter; a timed wait times out
 *   patch_demo fcntl     what fcntl(F_GETFL) shows; asking for O_NONBLOCK
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

static int demo_threads(void)
{
	void *result;
	check(pthread_join(start(returns_42, NULL), &result), "pthread_join");
	printf("joined a thread that returned %ld\n", (long)(intptr_t)result);
	check(pthread_join(start(exits_with_7, NULL), &result), "pthread_join");
	printf("joined a thread that called pthread_exit(%ld)\n", (long)(intptr_t)result);
	check(pthread_detach(start(detached, NULL)), "pthread_detach");
	while (!detached_ran)
		usleep(1000);
	printf("a detached thread ran\n");
	fflush(stdout);
	pthread_detach(start(outlives_main, NULL));
	pthread_exit(NULL);
}

/* ---- mutex -------------------------------------------------------------------- */

enum { COUNTERS = 20, ROUNDS = 50 };
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

static int demo_mutex(void)
{
	pthread_t threads[COUNTERS];
	for (int i = 0; i < COUNTERS; i++)
		threads[i] = start(count, NULL);
	for (int i = 0; i < COUNTERS; i++)
		check(pthread_join(threads[i], NULL), "pthread_join");
	printf("counter %ld of %d\n", counter, COUNTERS * ROUNDS);
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

static int demo_cond(void)
{
	pthread_t setter = start(set_flag, NULL);
	check(pthread_mutex_lock(&flag_lock), "pthread_mutex_lock");
	while (!flag)
		check(pthread_cond_wait(&flag_set, &flag_lock), "pthread_cond_wait");
	printf("woken with the flag set\n");
	struct timespec deadline;
	if (clock_gettime(CLOCK_REALTIME, &deadline) < 0)
		die("clock_gettime");
	deadline.tv_nsec += 50 * 1000 * 1000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	int err = pthread_cond_timedwait(&flag_set, &flag_lock, &deadline);
	printf("timed wait with nobody signalling: %s\n", strerror(err));
	check(pthread_mutex_unlock(&flag_lock), "pthread_mutex_unlock");
	check(pthread_join(setter, NULL), "pthread_join");
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
	if (read(pipefd[0], &byte, 1) < 0)
		printf("read on the empty pipe: %s\n", strerror(errno));
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

/* ---- spin and yield -------------------------------------------------------------- */

static atomic_int stop;

static void *stop_the_spinner(void *arg)
{
	(void)arg;
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
	const char *demo = argc == 2 ? argv[1] : "";
	if (strcmp(demo, "threads") == 0)
		return demo_threads();
	if (strcmp(demo, "mutex") == 0)
		return demo_mutex();
	if (strcmp(demo, "cond") == 0)
		return demo_cond();
	if (strcmp(demo, "fcntl") == 0)
		return demo_fcntl();
	if (strcmp(demo, "read") == 0 || strcmp(demo, "syscall") == 0)
		return demo_read(strcmp(demo, "syscall") == 0);
	if (strcmp(demo, "spin") == 0 || strcmp(demo, "yield") == 0)
		return demo_spin(strcmp(demo, "yield") == 0);
	if (strcmp(demo, "offload") == 0)
		return demo_offload();
	if (strcmp(demo, "resolve") == 0)
		return demo_resolve();
	fprintf(stderr, "usage: patch_demo threads|mutex|cond|fcntl|read|syscall|spin|yield|"
		"offload|resolve\n");
	return 2;
}
