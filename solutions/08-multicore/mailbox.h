/* Chapter 08: a mailbox, the one door into a hub from another thread.
 * Coroutines, their fds and their timers belong to one hub and must never
 * be touched from another thread; a thread that needs something done on a
 * hub posts a message here instead, and the hub runs it on its own thread,
 * in a coroutine, between two switches. */
#ifndef MAILBOX_H
#define MAILBOX_H

struct mailbox;

typedef void mailbox_fn(void *arg);

/* A mailbox with an eventfd to wake its hub. NULL, with errno, on failure. */
struct mailbox *mailbox_open(void);

/* From any thread: have the hub that serves box run fn(arg). Messages run in
 * the order they were posted. 0, or -1 with errno. */
int mailbox_post(struct mailbox *box, mailbox_fn *fn, void *arg);

/* A coroutine's body (co_spawn(mailbox_serve, box)) on the hub that owns
 * box: park on its eventfd and run each message that arrives, until
 * cancelled. */
void mailbox_serve(void *box);

/* Once no thread posts any more and the hub has stopped (co_run returned):
 * free box, dropping messages never run. */
void mailbox_close(struct mailbox *box);

#endif
