/* What each chapter's server promises; see promises.h. */
#define _GNU_SOURCE

#include "promises.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const struct th_promise promises[] = {
	/* One client at a time by design: a hostile client holds up everyone
	 * else until it leaves, so the suites check that the server survives
	 * each one and serves the next client afterwards. */
	{ "01-blocking", .serial = true, .echo_todos = "echo_loop", .retry_todos = "echo_loop write_all" },
	/* Each client's echo runs in a handler thread of its own. */
	{ "02-threads", .echo_todos = "spawn_handler handler_thread", .retry_todos = "" },
	/* Coroutines that retry on EAGAIN: correct, but they never sleep. */
	{ "03-setjmp", .spins_when_idle = true, .echo_todos = "run entry yield read_some",
	  .retry_todos = "read_some", .coroutine_todos = "run entry yield" },
	{ "04-asm-switch", .spins_when_idle = true, .echo_todos = "switch first_frame",
	  .coroutine_todos = "switch first_frame" },
	/* From chapter 05 on, the hub sleeps in epoll_wait: nothing spins. */
	{ "05-epoll-hub", .echo_todos = "green_read wait_fd poll", .retry_todos = "green_read wait_fd poll",
	  .idle_todos = "poll", .hub_todos = "wait_fd poll", .dump_signal = SIGUSR1 },
	/* Chapter 02's server, unchanged, linked with the patch: concurrent on
	 * green threads, asleep in epoll_wait when idle. Its own code handles
	 * short I/O and EINTR; the patch must only pass them through. It
	 * counts its handlers under a mutex, on every connection. */
	{ "06-monkey-patch", .echo_todos = "patch_read spawn_thread mutex_lock",
	  .retry_todos = "patch_read" },
	/* Chapter 07's TODOs are the primitives and the shutdown: the echo
	 * works without any of them, so the shared suites check none. */
	{ "07-timeouts-sync", .drains_on_stop = true, .echo_todos = "", .retry_todos = "",
	  .dump_signal = SIGUSR1 },
	/* Chapter 08 without its hubs started serves nobody; the rest of its
	 * TODOs matter only with more than one hub or to signals. */
	{ "08-multicore", .drains_on_stop = true, .echo_todos = "start_hubs", .dump_signal = SIGUSR1 },
	/* Chapter 07's server on a hub that runs on io_uring: without a request
	 * handed over, or its completion dispatched, nothing is echoed; without
	 * the completions reaped, the hub never sleeps. The short-I/O shim
	 * cannot reach calls that io_uring makes in the kernel: the short_io
	 * tests see only the kernel's own short counts there. */
	{ "09-io-uring", .drains_on_stop = true, .echo_todos = "submit_and_park complete",
	  .retry_todos = "", .idle_todos = "complete", .hub_todos = "submit_and_park complete",
	  .dump_signal = SIGUSR1 },
};

const struct th_promise *th_promise(void)
{
	static const struct th_promise unlisted = { .echo_todos = "", .retry_todos = "" };
	const char *chapter = getenv("TH_CHAPTER");
	for (size_t i = 0; chapter != NULL && i < sizeof promises / sizeof promises[0]; i++)
		if (strcmp(promises[i].chapter, chapter) == 0)
			return &promises[i];
	return &unlisted;
}
