/* Chapter 08: the mailbox; see mailbox.h. The queue is the one structure
 * two threads share, so a mutex guards it; the eventfd is how a poster
 * wakes a hub that sleeps in epoll_wait, and it costs the hub nothing while
 * nobody posts: its coroutine waits on it like on any socket. */
#define _GNU_SOURCE

#include "mailbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cli.h"
#include "co.h"
#include "green.h"

struct message {
	mailbox_fn *fn;
	void *arg;
	struct message *next;
};

/* Locking and unlocking a valid default mutex cannot fail
 * (pthread_mutex_lock(3)), so their results go unchecked below. */
struct mailbox {
	int efd;
	pthread_mutex_t lock;           /* guards head and tail */
	struct message *head, *tail;
};

struct mailbox *mailbox_open(void)
{
	struct mailbox *box = calloc(1, sizeof *box);
	if (box == NULL)
		return NULL;
	box->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (box->efd < 0) {
		int err = errno;
		free(box);
		errno = err;
		return NULL;
	}
	int err = pthread_mutex_init(&box->lock, NULL);
	if (err != 0) {
		close(box->efd);
		free(box);
		errno = err;
		return NULL;
	}
	return box;
}

int mailbox_post(struct mailbox *box, mailbox_fn *fn, void *arg)
{
	/* TODO mailbox_post: queue the message, then wake the hub.
	 * malloc() a struct message for fn and arg (-1 if that fails); with
	 * box->lock held, append it at box->tail (or make it box->head when
	 * the queue is empty); unlock; then write() the 8 bytes of a uint64_t
	 * 1 to box->efd (-1 if that fails); return 0.
	 * Hint: append first, write second: a hub woken by the write must find
	 * the message queued, or it takes an empty queue, and the message
	 * waits for the next post (the last one, for ever). Write after
	 * unlocking, so that the lock is held as briefly as possible.
	 * Tests: messages_from_another_thread_run_on_the_hub_in_order,
	 * each_poster_keeps_its_order, messages_posted_while_the_hub_runs_one_still_run,
	 * a_signal_reaches_every_hub, sigterm_drains_every_hub_without_losing_a_byte.
	 */
	(void)box; (void)fn; (void)arg;
	errno = ENOSYS;
	return -1;
}

/* Take every message queued so far, oldest first. */
static struct message *take_all(struct mailbox *box)
{
	pthread_mutex_lock(&box->lock);
	struct message *all = box->head;
	box->head = box->tail = NULL;
	pthread_mutex_unlock(&box->lock);
	return all;
}

void mailbox_serve(void *arg)
{
	struct mailbox *box = arg;
	co_set_name("mailbox");
	/* TODO mailbox_serve: run the messages as they come, until cancelled.
	 * Loop: green_read() the eventfd's 8-byte counter (that parks until
	 * some thread posts; reading resets the counter). If it fails, return
	 * (quietly when errno is ECANCELED: that is how the hub stops this
	 * coroutine; else cli_warn). Then take_all() the queued messages and
	 * run each, oldest first: msg->fn(msg->arg), then free it.
	 * Hint: a message may park (its function may spawn, join, sleep), so
	 * take the next pointer before freeing the message.
	 * Tests: messages_from_another_thread_run_on_the_hub_in_order,
	 * each_poster_keeps_its_order, messages_posted_while_the_hub_runs_one_still_run,
	 * a_signal_reaches_every_hub, sigterm_drains_every_hub_without_losing_a_byte.
	 */
	(void)box; (void)take_all;
}

void mailbox_close(struct mailbox *box)
{
	struct message *msg = take_all(box);
	while (msg != NULL) {
		struct message *next = msg->next;
		free(msg);
		msg = next;
	}
	/* The hub has stopped: no epoll set to take the fd out of. */
	if (close(box->efd) < 0)
		cli_warn("mailbox: close the eventfd");
	pthread_mutex_destroy(&box->lock);
	free(box);
}
