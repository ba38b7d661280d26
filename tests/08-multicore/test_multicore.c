/* Chapter 08's server tests: with -n 2, two hub threads listen on one port
 * and the kernel spreads the clients over them; signals reach every hub
 * through its mailbox; SIGTERM drains every hub without losing a byte. */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

enum { KIB = 1024 };

static const char *const two_hubs[] = { "-n", "2", NULL };

static struct th_server *start_two_hubs(void)
{
	struct th_launch launch = { .args = two_hubs };
	return th_start(&launch);
}

/* Threads of the server, from /proc/PID/task. */
static int thread_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		th_fail("opendir %s: %s", path, strerror(errno));
	int n = 0;
	for (struct dirent *entry; (entry = readdir(dir)) != NULL;)
		if (entry->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* Wait until the server's stderr holds every one of the texts. */
static void expect_in_stderr(const struct th_server *server, const char *const *texts,
			     const char *why)
{
	for (int i = 0; texts[i] != NULL; i++)
		if (!th_stderr_shows(server, texts[i], 2000))
			th_fail("%s: expected \"%s\" on its stderr, which has:\n%s", why, texts[i],
				th_server_stderr(server));
}

START_TEST(two_hubs_share_the_port_and_both_serve)
{
	th_about("reuseport start_hubs", "with -n 2 the server must run two hub threads, each "
		 "listening on the same port (SO_REUSEPORT), and the kernel then gives each some of "
		 "the clients");
	struct th_server *server = start_two_hubs();
	int threads = thread_count(server->pid);
	if (threads != 3)
		th_fail("with -n 2 the server should run 3 threads (2 hubs and the main thread); "
			"/proc/%d/task lists %d", (int)server->pid, threads);
	unsigned char *data = th_payload(KIB, 81);
	th_echo_many(server, 200, data, KIB, 0, 0);
	free(data);
	th_stop(server);
	const char *log = th_server_stderr(server);
	const char *each = strstr(log, "(hub 0: ");
	unsigned long first, second;
	if (each == NULL || sscanf(each, "(hub 0: %lu, hub 1: %lu)", &first, &second) != 2)
		th_fail("expected the shutdown summary to say \"(hub 0: N, hub 1: M)\"; stderr has:\n%s",
			log);
	if (first + second != 200 || first == 0 || second == 0)
		th_fail("200 clients, of which hub 0 served %lu and hub 1 served %lu: each hub should "
			"get some of them", first, second);
}
END_TEST

/* Descriptors of the server that are epoll instances, from /proc/PID/fd. */
static int epoll_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	DIR *dir = opendir(path);
	if (dir == NULL)
		th_fail("opendir %s: %s", path, strerror(errno));
	int n = 0;
	for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
		char link[320], target[64];
		snprintf(link, sizeof link, "%s/%s", path, entry->d_name);
		ssize_t len = readlink(link, target, sizeof target - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		n += strcmp(target, "anon_inode:[eventpoll]") == 0;
	}
	closedir(dir);
	return n;
}

START_TEST(every_hub_is_ready_when_the_port_is_announced)
{
	th_about("start_hubs", "the server may say it listens only once every hub has its epoll "
		 "instance and waits for clients; here each hub thread starts 200 ms late "
		 "(tests/08-multicore/late_threads.c), as threads may on a loaded machine");
	struct th_launch launch = { .args = two_hubs, .preload = th_build_path("late_threads.so") };
	struct th_server *server = th_start(&launch);
	int ready = epoll_count(server->pid);
	if (ready != 2)
		th_fail("when the server printed its listening line, %d of its 2 hubs had an epoll "
			"instance (anon_inode:[eventpoll] in /proc/%d/fd): start_hubs() must wait at "
			"the barrier until every hub is ready. Clients that connect at once could "
			"otherwise use up the descriptors a late hub still needs (EMFILE), and its "
			"share of the connections would never be served", ready, (int)server->pid);
	if (kill(server->pid, SIGUSR1) < 0)
		th_fail("kill SIGUSR1: %s", strerror(errno));
	static const char *const dumps[] = { "hub 0:", "hub 1:", NULL };
	expect_in_stderr(server, dumps, "after SIGUSR1, each of the 2 hubs should dump its "
			 "coroutines: is one of them still waiting at the barrier?");
}
END_TEST

START_TEST(a_signal_reaches_every_hub)
{
	th_about("mailbox_post mailbox_serve start_hubs", "the main thread takes SIGUSR1 and must "
		 "post a dump to every hub's mailbox, and each hub must print its coroutines");
	struct th_server *server = start_two_hubs();
	if (kill(server->pid, SIGUSR1) < 0)
		th_fail("kill SIGUSR1: %s", strerror(errno));
	static const char *const dumps[] = { "hub 0:", "hub 1:", "accept", "mailbox", NULL };
	expect_in_stderr(server, dumps, "after SIGUSR1, each hub should dump its coroutines");
}
END_TEST

START_TEST(sigterm_drains_every_hub_without_losing_a_byte)
{
	th_about("mailbox_post mailbox_serve start_hubs", "on SIGTERM every hub must stop accepting "
		 "and let its connected clients finish their echoes before the server exits");
	enum { CLIENTS = 40, HALF = 32 * KIB };
	struct th_server *server = start_two_hubs();
	unsigned char *data = th_payload(2 * HALF, 82);
	int fds[CLIENTS];
	struct th_exchange ex[CLIENTS];
	struct th_reply replies[CLIENTS];
	for (int i = 0; i < CLIENTS; i++) {
		fds[i] = th_connect(server);
		ex[i] = (struct th_exchange){ .send = data, .send_len = HALF, .want = HALF };
	}
	th_exchange_many(fds, ex, replies, CLIENTS);
	for (int i = 0; i < CLIENTS; i++) {
		th_check_echo(data, HALF, &replies[i]);
		th_reply_free(&replies[i]);
	}
	/* Every client is in the middle of its conversation: stop the server. */
	if (kill(server->pid, SIGTERM) < 0)
		th_fail("kill SIGTERM: %s", strerror(errno));
	for (int i = 0; i < CLIENTS; i++)
		ex[i] = (struct th_exchange){ .send = data + HALF, .send_len = HALF, .want = HALF };
	th_exchange_many(fds, ex, replies, CLIENTS);
	for (int i = 0; i < CLIENTS; i++) {
		th_check_echo(data + HALF, HALF, &replies[i]);
		th_reply_free(&replies[i]);
		th_close(fds[i]);
	}
	free(data);
	th_stop(server);
	char expected[64];
	snprintf(expected, sizeof expected, "%d connected at the signal, of which %d finished",
		 CLIENTS, CLIENTS);
	const char *const summary[] = { expected, NULL };
	expect_in_stderr(server, summary, "every client connected at SIGTERM finished in time");
}
END_TEST

static Suite *multicore_suite(void)
{
	Suite *s = th_suite("08-multicore");
	TCase *tc = th_tcase(s, "hubs", "reuseport start_hubs");
	th_test(tc, two_hubs_share_the_port_and_both_serve);
	tc = th_tcase(s, "hubs starting late", "start_hubs");
	th_test(tc, every_hub_is_ready_when_the_port_is_announced);
	tc = th_tcase(s, "signals", "mailbox_post mailbox_serve start_hubs");
	th_test(tc, a_signal_reaches_every_hub);
	th_test(tc, sigterm_drains_every_hub_without_losing_a_byte);
	return s;
}

int main(void)
{
	return th_run(multicore_suite());
}
