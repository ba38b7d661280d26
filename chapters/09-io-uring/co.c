/* Chapter 05: coroutines and the scheduler; see co.h and sched.h.
 *
 * From chapter 04: stacks from mmap() with a guard page, a first frame built
 * by hand, co_switch() in assembly. New here: a coroutine can park (wait for
 * something) and be woken; the scheduler's idle step is the hub's epoll_wait;
 * join, sleep, cancellation, and the numbers the watchdog reads. */
#include "sched.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"

/* switch_$(ARCH).S, from chapter 04. */
void co_switch(void **from, void *const *to);
uint64_t co_fp_control_now(void);
#if defined(__aarch64__)
void co_start(void);
#endif

static struct {
	struct co *head, *tail; /* the run queue */
	size_t runnable;        /* its length */
	struct co *current;     /* the one running, or NULL in the scheduler */
	struct co *all;         /* every coroutine, newest first */
	size_t count;
	co_id last_id;
	void *sp;               /* the scheduler's stack pointer while a coroutine runs */
	struct stack_tools tools;
	const void *stack_low;  /* the scheduler's stack, for ASan */
	size_t stack_size;
} sched;

/* Read by the watchdog thread, hence atomic: how many switches so far, and
 * which coroutine is running (id 0: the scheduler) and under what name. The
 * watchdog cannot look at the struct co itself: the coroutine may rename
 * itself meanwhile, or end and be unmapped. So the hub thread publishes the
 * id and a copy of the name at every switch and every co_set_name(), under
 * a sequence count that is odd while it writes (a seqlock): the watchdog
 * copies them and tries again if the count moved meanwhile. Every word is
 * an atomic, so that no byte is ever read while it is written (the C11
 * seqlock of Boehm, "Can seqlocks get along with programming language
 * memory models?", MSPC 2012). It costs a switch a dozen plain stores. */
enum { NAME_WORDS = CO_NAME_SIZE / sizeof(uint64_t) };
_Static_assert(CO_NAME_SIZE % sizeof(uint64_t) == 0, "CO_NAME_SIZE must be whole words");
static _Atomic uint64_t switches;
static struct {
	_Atomic uint32_t seq;
	_Atomic co_id id;
	_Atomic uint64_t name[NAME_WORDS];
} running;

int64_t co_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t co_switches(void)
{
	return atomic_load_explicit(&switches, memory_order_relaxed);
}

/* On the hub thread: co is running now (NULL: the scheduler). */
static void publish_running(const struct co *co)
{
	uint32_t seq = atomic_load_explicit(&running.seq, memory_order_relaxed);
	atomic_store_explicit(&running.seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&running.id, co != NULL ? co->id : 0, memory_order_relaxed);
	for (size_t i = 0; co != NULL && i < NAME_WORDS; i++) {
		uint64_t word;
		memcpy(&word, co->name + i * sizeof word, sizeof word);
		atomic_store_explicit(&running.name[i], word, memory_order_relaxed);
	}
	atomic_store_explicit(&running.seq, seq + 2, memory_order_release);
}

co_id co_running(char name[CO_NAME_SIZE])
{
	uint64_t words[NAME_WORDS];
	uint32_t before, after;
	co_id id;
	do {
		before = atomic_load_explicit(&running.seq, memory_order_acquire);
		id = atomic_load_explicit(&running.id, memory_order_relaxed);
		for (size_t i = 0; i < NAME_WORDS; i++)
			words[i] = atomic_load_explicit(&running.name[i], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		after = atomic_load_explicit(&running.seq, memory_order_relaxed);
	} while ((before & 1) != 0 || before != after);
	memcpy(name, words, CO_NAME_SIZE);
	name[CO_NAME_SIZE - 1] = '\0';
	return id;
}

struct co *co_current(void)
{
	return sched.current;
}

struct co *co_all(void)
{
	return sched.all;
}

co_id co_self(void)
{
	return sched.current != NULL ? sched.current->id : 0;
}

size_t co_count(void)
{
	return sched.count;
}

static void make_runnable(struct co *co)
{
	co->state = CO_RUNNABLE;
	co->next_runnable = NULL;
	if (sched.tail != NULL)
		sched.tail->next_runnable = co;
	else
		sched.head = co;
	sched.tail = co;
	sched.runnable++;
}

static struct co *next_runnable(void)
{
	struct co *co = sched.head;
	if (co != NULL) {
		sched.head = co->next_runnable;
		if (sched.head == NULL)
			sched.tail = NULL;
		sched.runnable--;
	}
	return co;
}

/* Where co_trampoline() would return to, if it ever did. */
static _Noreturn void co_returned_past_trampoline(void)
{
	static const char msg[] = "co: coroutine returned past its trampoline\n";
	ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
	(void)ignored;
	abort();
}

/* From the running coroutine to the scheduler. */
static void switch_to_scheduler(struct co *co, bool for_good)
{
	stack_tools_leave(&co->tools, for_good, sched.stack_low, sched.stack_size);
	co_switch(&co->sp, &sched.sp);
	stack_tools_arrived(&co->tools, NULL, NULL);
}

static _Noreturn void co_trampoline(void)
{
	struct co *co = sched.current;
	stack_tools_arrived(&co->tools, &sched.stack_low, &sched.stack_size);
	co->fn(co->arg);
	co = sched.current;
	co->state = CO_FINISHED;
	switch_to_scheduler(co, true);
	co_returned_past_trampoline();
}

/* Lay out a new stack so that co_switch() to it starts co_trampoline(). */
static void *first_frame(char *top)
{
	uint64_t *slot = (uint64_t *)(void *)top;
#if defined(__x86_64__)
	*--slot = (uint64_t)(uintptr_t)co_returned_past_trampoline;
	*--slot = (uint64_t)(uintptr_t)co_trampoline;
	for (int i = 0; i < 6; i++)	/* rbp, rbx, r12, r13, r14, r15 */
		*--slot = 0;
	*--slot = co_fp_control_now();
#elif defined(__aarch64__)
	slot -= 22;
	memset(slot, 0, 22 * sizeof *slot);
	slot[0] = (uint64_t)(uintptr_t)co_returned_past_trampoline;
	slot[1] = (uint64_t)(uintptr_t)co_trampoline;
	slot[11] = (uint64_t)(uintptr_t)co_start;
	slot[20] = co_fp_control_now();
#else
#error "first_frame() needs the frame layout of this CPU's co_switch"
#endif
	return slot;
}

/* A coroutine's memory is one mapping: a guard page, its stack, and its
 * struct co at the very top, so that the bookkeeping a switch reads and the
 * frames it pushes share one page: the fewer pages a round trip touches,
 * the fewer cache and TLB misses with ten thousand coroutines. mmap() gives
 * zeroed memory, as calloc() would. NULL, with errno, on failure. */
static struct co *map_coroutine(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t size = page + CO_STACK_SIZE;
	char *mapping = mmap(NULL, size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (mapping == MAP_FAILED)
		return NULL;
	if (mprotect(mapping, page, PROT_NONE) < 0) {
		int err = errno;
		munmap(mapping, size);
		errno = err;
		return NULL;
	}
	/* 64-byte aligned: a struct co starts a cache line. */
	size_t co_size = (sizeof(struct co) + 63) & ~(size_t)63;
	struct co *co = (struct co *)(void *)(mapping + size - co_size);
	co->mapping = mapping;
	co->mapping_size = size;
	co->stack = mapping + page;
	co->stack_size = CO_STACK_SIZE - co_size;
	return co;
}

co_id co_spawn(co_fn *fn, void *arg)
{
	struct co *co = map_coroutine();
	if (co == NULL)
		return 0;
	co->id = ++sched.last_id;
	snprintf(co->name, sizeof co->name, "coroutine %llu", (unsigned long long)co->id);
	co->fn = fn;
	co->arg = arg;
	co->sp = first_frame(co->stack + co->stack_size);
	co->timer.index = TIMER_IDLE;
	co->deadline = -1;
	co->wait.fd = -1;
	stack_tools_created(&co->tools, co->stack, co->stack_size);
	co->next = sched.all;
	if (sched.all != NULL)
		sched.all->prev = co;
	sched.all = co;
	sched.count++;
	make_runnable(co);
	return co->id;
}

static void co_free(struct co *co)
{
	if (co->prev != NULL)
		co->prev->next = co->next;
	else
		sched.all = co->next;
	if (co->next != NULL)
		co->next->prev = co->prev;
	stack_tools_destroyed(&co->tools);
	hub_forget_co(co);
	sched.count--;
	/* The struct goes with the mapping. munmap can only fail for an
	 * address range that is not ours. */
	munmap(co->mapping, co->mapping_size);
}

void co_set_name(const char *name)
{
	struct co *co = sched.current;
	if (co == NULL)
		return;
	size_t len = strnlen(name, sizeof co->name - 1);
	memcpy(co->name, name, len);
	co->name[len] = '\0';
	publish_running(co);	/* the watchdog may be about to name it */
}

static int park(struct co *co)
{
	co->state = CO_WAITING;
	switch_to_scheduler(co, false);
	co->wait = (struct co_wait){ .fd = -1 };
	return co->wake_result;
}

int co_park(void)
{
	struct co *co = sched.current;
	if (co->cancelled)
		return ECANCELED;
	return park(co);
}

int co_park_uninterruptible(void)
{
	return park(sched.current);
}

void co_wake(struct co *co, int result)
{
	/* An fd event and a timer can both come in one hub_poll(): the first
	 * wakes it, the second finds it runnable already. */
	if (co->state != CO_WAITING)
		return;
	co->wake_result = result;
	make_runnable(co);
}

void co_yield(void)
{
	struct co *co = sched.current;
	if (co == NULL)
		return;
	make_runnable(co);
	switch_to_scheduler(co, false);
}

int64_t co_deadline_after(long ms)
{
	/* co_now_ms() counts whole milliseconds: now + ms could be up to a
	 * millisecond short of ms from now, so count from the next one. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	return (now_ns + 999999) / 1000000 + ms;
}

int co_sleep(long ms)
{
	if (ms <= 0) {
		co_yield();
		return 0;
	}
	return hub_sleep_until(co_deadline_after(ms));
}

static struct co *find(co_id id)
{
	for (struct co *co = sched.all; co != NULL; co = co->next)
		if (co->id == id)
			return co;
	return NULL;
}

int co_join(co_id id)
{
	struct co *self = sched.current;
	if (self != NULL && self->id == id) {
		errno = EDEADLK;
		return -1;
	}
	struct co *target = find(id);
	/* Ids are never reused: one that is not found has ended already. */
	if (target == NULL || target->state == CO_FINISHED)
		return 0;
	if (self == NULL || target->joiner != 0) {
		errno = self == NULL ? EPERM : EBUSY;
		return -1;
	}
	target->joiner = self->id;
	self->wait = (struct co_wait){ .what = "join", .fd = -1, .other = id };
	int result = co_park();
	target = find(id);
	if (target != NULL && target->joiner == self->id)
		target->joiner = 0;
	if (result != 0) {
		errno = result;
		return -1;
	}
	return 0;
}

int co_cancel(co_id id)
{
	struct co *co = find(id);
	if (co == NULL || co->state == CO_FINISHED) {
		errno = ESRCH;
		return -1;
	}
	co->cancelled = true;
	co_wake(co, ECANCELED);
	return 0;
}

void co_cancel_all(void)
{
	for (struct co *co = sched.all; co != NULL; co = co->next) {
		if (co == sched.current || co->state == CO_FINISHED)
			continue;
		co->cancelled = true;
		co_wake(co, ECANCELED);
	}
}

/* What run() prefetches of the next coroutine's stack; a cache line. */
enum { PREFETCH_STACK_BYTES = 512, CACHE_LINE = 64 };

/* Give co the CPU until it parks, yields or ends. */
static void run(struct co *co)
{
	/* Chapter 09: with ten thousand clients, what a switch reads is
	 * rarely in the CPU's caches: the struct co and the frames the
	 * coroutine returns through (half a KiB of stack in the echo server,
	 * from its saved stack pointer up) were last touched ten thousand
	 * switches ago, and the switch waits for each line in turn. The run
	 * queue says which coroutine runs next, so while this one runs, the
	 * CPU fetches the next one's: __builtin_prefetch() starts loading a
	 * line without waiting for it, and never faults. (Here, not in a
	 * function of its own: GCC takes a function that only prefetches for
	 * one that does nothing, and drops its calls.) The lesson, section 5,
	 * measures what it saves. */
	const struct co *next = sched.head;
	if (next != NULL) {
		for (size_t at = 0; at < PREFETCH_STACK_BYTES; at += CACHE_LINE)
			__builtin_prefetch((const char *)next->sp + at);
		for (size_t at = 0; at < sizeof *next; at += CACHE_LINE)
			__builtin_prefetch((const char *)next + at);
	}
	sched.current = co;
	co->state = CO_RUNNING;
	publish_running(co);
	atomic_fetch_add_explicit(&switches, 1, memory_order_relaxed);
	stack_tools_leave(&sched.tools, false, co->stack, co->stack_size);
	co_switch(&sched.sp, &co->sp);
	stack_tools_arrived(&sched.tools, NULL, NULL);
	publish_running(NULL);
	atomic_fetch_add_explicit(&switches, 1, memory_order_relaxed);
	sched.current = NULL;
}

/* A coroutine ended: wake whoever joins it, and free it. */
static void finish(struct co *co)
{
	if (co->joiner != 0) {
		struct co *joiner = find(co->joiner);
		if (joiner != NULL)
			co_wake(joiner, 0);
	}
	co_free(co);
}

/* How many coroutines the "all asleep" report lists: enough to see the
 * pattern, not ten thousand lines. */
enum { DUMP_WHEN_ASLEEP = 20 };

int co_run(void)
{
	if (hub_open(HUB_AUTO) < 0) {
		fprintf(stderr, "co: cannot open the hub: %s\n", strerror(errno));
		return -1;
	}
	/* A pass over the run queue: the coroutines runnable when it began.
	 * At the end of each, the hub looks at the sockets and timers too,
	 * without sleeping if someone can still run: coroutines that keep
	 * yielding to each other must not starve those that wait. */
	size_t pass_left = sched.runnable;
	while (sched.count > 0) {
		struct co *co = next_runnable();
		if (co == NULL) {
			/* Nothing can run: sleep in the kernel until something can. */
			if (hub_poll(true)) {
				pass_left = sched.runnable;
				continue;
			}
			fprintf(stderr, "co: all coroutines are asleep, and nothing can wake them:\n");
			co_dump_first(stderr, DUMP_WHEN_ASLEEP);
			return -1;
		}
		run(co);
		if (co->state == CO_FINISHED)
			finish(co);
		if (pass_left > 0)
			pass_left--;
		if (pass_left == 0 && sched.runnable > 0) {
			hub_poll(false);
			pass_left = sched.runnable;
		}
	}
	hub_close();
	return 0;
}
