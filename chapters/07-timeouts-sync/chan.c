/* Chapter 07: bounded channels; see sync.h. Items go straight from a sender
 * to a waiting receiver, and from a waiting sender into the room a receive
 * makes, so that a coroutine woken for an item always gets it: first come,
 * first served, and nobody who runs in between can take it. */
#include <errno.h>
#include <stdlib.h>

#include "sync.h"

int co_chan_init(struct co_chan *ch, size_t capacity)
{
	*ch = (struct co_chan){ .capacity = capacity };
	if (capacity == 0)
		return 0;
	ch->items = calloc(capacity, sizeof *ch->items);
	return ch->items != NULL ? 0 : -1;
}

void co_chan_free(struct co_chan *ch)
{
	free(ch->items);
	*ch = (struct co_chan){ .capacity = 0 };
}

static void push(struct co_chan *ch, void *item)
{
	ch->items[(ch->first + ch->len) % ch->capacity] = item;
	ch->len++;
}

static void *pop(struct co_chan *ch)
{
	void *item = ch->items[ch->first];
	ch->first = (ch->first + 1) % ch->capacity;
	ch->len--;
	return item;
}

static int fail(int err)
{
	errno = err;
	return -1;
}

int co_chan_send(struct co_chan *ch, void *item, int64_t deadline)
{
	/* TODO chan_send: send item, waiting while the channel is full.
	 * A closed channel fails at once with EPIPE. If a receiver waits
	 * (waitq_wake(&ch->receivers, 0) returns it), the buffer is empty:
	 * hand the item straight to it (its ->item) and return 0. Else, if
	 * there is room (len < capacity), push() it and return 0. Else wait in
	 * ch->senders with the item in your struct waiter (what: "send"): a
	 * receive takes it from there and wakes you with 0; co_chan_close()
	 * wakes you with EPIPE. Return -1 with errno for anything but 0.
	 * Hint: use fail(err) to set errno and return -1 in one go.
	 * Tests: channel_delivers_items_in_order,
	 * channel_send_blocks_when_full_until_a_receive,
	 * channel_receive_lets_a_waiting_sender_in_at_once,
	 * channel_receive_blocks_until_a_send,
	 * channel_wakes_blocked_receivers_first_come_first_served,
	 * channel_close_lets_receivers_drain_then_reports_closed,
	 * unbuffered_channel_hands_items_over_directly,
	 * channel_receive_times_out_and_loses_no_later_item,
	 * channel_close_wakes_blocked_senders_with_epipe.
	 */
	(void)ch; (void)item; (void)deadline; (void)push;
	return fail(ENOSYS);
}

/* A receive made room, or finds a sender waiting on an unbuffered channel:
 * take the first waiting sender's item. false if no sender waits. */
static bool take_from_sender(struct co_chan *ch, void **item)
{
	struct waiter *sender = waitq_wake(&ch->senders, 0);
	if (sender == NULL)
		return false;
	*item = sender->item;
	return true;
}

int co_chan_recv(struct co_chan *ch, void **item, int64_t deadline)
{
	/* TODO chan_recv: receive the oldest item, waiting while there is none.
	 * If the buffer holds items (len > 0), pop() the oldest into *item;
	 * that makes room, so if a sender waits, move its item into the buffer
	 * (take_from_sender(), then push()); return 0. With an empty buffer, a
	 * waiting sender (only on an unbuffered channel) hands its item over
	 * directly: take_from_sender() into *item, return 0. Else a closed
	 * channel fails with EPIPE; an open one makes you wait in
	 * ch->receivers (what: "receive"): woken with 0, a sender has put the
	 * item in your struct waiter; with EPIPE, the channel closed.
	 * Hint: the buffered items come out before EPIPE does, so that closing
	 * a channel loses nothing that was sent.
	 * Tests: channel_delivers_items_in_order,
	 * channel_send_blocks_when_full_until_a_receive,
	 * channel_receive_lets_a_waiting_sender_in_at_once,
	 * channel_receive_blocks_until_a_send,
	 * channel_wakes_blocked_receivers_first_come_first_served,
	 * channel_close_lets_receivers_drain_then_reports_closed,
	 * unbuffered_channel_hands_items_over_directly,
	 * channel_receive_times_out_and_loses_no_later_item,
	 * channel_close_wakes_blocked_receivers_with_epipe.
	 */
	(void)ch; (void)item; (void)deadline; (void)pop; (void)take_from_sender;
	return fail(ENOSYS);
}

void co_chan_close(struct co_chan *ch)
{
	ch->closed = true;
	/* Receivers wait only on an empty buffer: nothing more will come. */
	waitq_wake_all(&ch->receivers, EPIPE);
	waitq_wake_all(&ch->senders, EPIPE);
}
