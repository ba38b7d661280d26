/* Chapter 04 benchmark: what one context switch costs, measured the ways
 * chapters 03 and 04 switch, and the ways a library or the kernel would.
 *
 * Each way ping-pongs between the main stack and one other context; a round
 * trip is two switches. Everything runs pinned to one CPU (the two threads
 * of the last way too). Each way is timed in several runs of CPU time, the
 * ways taking turns, and the median reported. `make bench-switch` runs it,
 * then counts instructions under callgrind with --count.
 *
 *   bench_switch                  the table
 *   bench_switch --count WAY N    N round trips of one way, untimed, in the
 *                                 function loop_WAY (for callgrind) */
#define _GNU_SOURCE
/* Chapter 03's setjmp switch needs the unchecked _longjmp; see its co.c. */
#undef _FORTIFY_SOURCE

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

/* The chapter's coroutines, for the way they start: first_frame() and
 * co_trampoline() are static there. */
#include "../co.c"

enum { STACK_SIZE = 64 * 1024, RUNS = 15 };
static const double RUN_SECONDS = 0.02;	/* each run lasts about this long */

/* The chapter's switch (switch_$(ARCH).S, which co.c declares) assembled
 * once more with its other ending, under this name (see build.mk). */
void co_switch_variant(void **from, void *const *to);

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "bench_switch: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* A stack for one context, freed when the program exits. */
static char *new_stack(void)
{
	char *stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		die("mmap");
	return stack;
}

/* ---- chapter 03: _setjmp and _longjmp ---- */

static jmp_buf setjmp_main, setjmp_other;

/* Load sp = top and call entry there, as chapter 03's co.c does. */
static _Noreturn void start_on_stack(char *top, void (*entry)(void))
{
#if defined(__x86_64__)
	__asm__ volatile("mov %0, %%rsp\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "call *%1\n\t"
			 "ud2"
			 : : "r"(top), "r"(entry) : "memory");
#elif defined(__aarch64__)
	__asm__ volatile("mov sp, %0\n\t"
			 "mov x29, xzr\n\t"
			 "blr %1\n\t"
			 "brk #0"
			 : : "r"(top), "r"(entry) : "memory");
#else
#error "start_on_stack() needs a few lines of assembly for this CPU"
#endif
	__builtin_unreachable();
}

/* One switch as chapter 03's co_yield() makes it: save where we are, jump
 * to where the other side saved itself. The call returns when someone
 * jumps back to `from`. */
static __attribute__((noinline)) void setjmp_switch(jmp_buf from, jmp_buf to)
{
	if (_setjmp(from) == 0)
		_longjmp(to, 1);
}

static _Noreturn void other_setjmp(void)
{
	for (;;)
		setjmp_switch(setjmp_other, setjmp_main);
}

static void setup_setjmp(void)
{
	if (_setjmp(setjmp_main) == 0)
		start_on_stack(new_stack() + STACK_SIZE, other_setjmp);
}

static __attribute__((noinline)) void loop_setjmp(long round_trips)
{
	for (long i = 0; i < round_trips; i++)
		setjmp_switch(setjmp_main, setjmp_other);
}

/* ---- chapter 04: co_switch, and the variant with the other ending ---- */

/* The other side: a coroutine from co_spawn(), on the chapter's stack with
 * the chapter's first frame, taken off the run queue because the benchmark
 * switches to it by hand. Returns its stack pointer. Its first switch starts
 * co_trampoline(), which runs the function of sched.current: this one. */
static void *other_side(co_fn *fn, void *arg)
{
	if (!co_spawn(fn, arg))
		die("co_spawn");
	sched.current = dequeue();
	return sched.current->sp;
}

static void *asm_main, *asm_other;

static void other_asm(void *arg)
{
	(void)arg;
	for (;;)
		co_switch(&asm_other, &asm_main);
}

static void setup_asm(void)
{
	asm_other = other_side(other_asm, NULL);
}

static __attribute__((noinline)) void loop_asm(long round_trips)
{
	for (long i = 0; i < round_trips; i++)
		co_switch(&asm_main, &asm_other);
}

static void *variant_main, *variant_other;

static void other_variant(void *arg)
{
	(void)arg;
	for (;;)
		co_switch_variant(&variant_other, &variant_main);
}

static void setup_variant(void)
{
	variant_other = other_side(other_variant, NULL);
}

static __attribute__((noinline)) void loop_variant(long round_trips)
{
	for (long i = 0; i < round_trips; i++)
		co_switch_variant(&variant_main, &variant_other);
}

/* ---- the same two switches, called as programs call them ---- */

/* Above, each side calls the switch straight from its loop. In a program a
 * switch is called from a function that was called in turn (co_yield() from
 * a coroutine's code), and whether the CPU predicts the `ret` then depends
 * on where each side called from: its prediction is the return address of
 * the latest call made on this CPU, whichever stack that was on. Here every
 * switch sits under two levels of real calls (the empty asm after each call
 * keeps the compiler from making it a jump), on both sides from the same
 * two functions ("one call site"), or each side from its own ("two call
 * sites"), as the scheduler and a coroutine do in the chapter's code. */
typedef void switch_fn(void **from, void *const *to);

struct deep {
	switch_fn *sw;
	bool apart;		/* each side from call sites of its own */
	void *main_sp, *other_sp;
};

static __attribute__((noinline)) void site_a_inner(switch_fn *sw, void **from, void *const *to)
{
	sw(from, to);
	__asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void site_a(switch_fn *sw, void **from, void *const *to)
{
	site_a_inner(sw, from, to);
	__asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void site_b_inner(switch_fn *sw, void **from, void *const *to)
{
	sw(from, to);
	__asm__ volatile("" ::: "memory");
}

static __attribute__((noinline)) void site_b(switch_fn *sw, void **from, void *const *to)
{
	site_b_inner(sw, from, to);
	__asm__ volatile("" ::: "memory");
}

static void other_deep(void *arg)
{
	struct deep *d = arg;
	for (;;) {
		if (d->apart)
			site_b(d->sw, &d->other_sp, &d->main_sp);
		else
			site_a(d->sw, &d->other_sp, &d->main_sp);
	}
}

static struct deep deep_jmp_one = { co_switch, false, NULL, NULL };
static struct deep deep_ret_one = { co_switch_variant, false, NULL, NULL };
static struct deep deep_jmp_two = { co_switch, true, NULL, NULL };
static struct deep deep_ret_two = { co_switch_variant, true, NULL, NULL };

static void setup_deep(struct deep *d)
{
	d->other_sp = other_side(other_deep, d);
}

static __attribute__((noinline)) void loop_deep(struct deep *d, long round_trips)
{
	for (long i = 0; i < round_trips; i++)
		site_a(d->sw, &d->main_sp, &d->other_sp);
}

/* ---- Boost.Context's fcontext, where build.mk found libboost_context ---- */

#ifdef BENCH_BOOST_CONTEXT
/* The C-callable functions in libboost_context (boost/context/detail/
 * fcontext.hpp declares them for C++). A context is an opaque pointer; a
 * jump returns the context it came from, and a pointer passed along. */
struct fcontext_transfer {
	void *from;
	void *data;
};
struct fcontext_transfer jump_fcontext(void *to, void *data);
void *make_fcontext(void *stack_top, size_t size, void (*entry)(struct fcontext_transfer));

static void *boost_other;

static _Noreturn void other_boost(struct fcontext_transfer t)
{
	for (;;)
		t = jump_fcontext(t.from, NULL);
}

static void setup_boost(void)
{
	boost_other = make_fcontext(new_stack() + STACK_SIZE, STACK_SIZE, other_boost);
}

static __attribute__((noinline)) void loop_boost(long round_trips)
{
	for (long i = 0; i < round_trips; i++)
		boost_other = jump_fcontext(boost_other, NULL).from;
}
#endif

/* ---- ucontext: swapcontext, which also sets the signal mask ---- */

static ucontext_t ucontext_main, ucontext_other;

static void other_ucontext(void)
{
	for (;;)
		swapcontext(&ucontext_other, &ucontext_main);
}

static void setup_ucontext(void)
{
	if (getcontext(&ucontext_other) < 0)
		die("getcontext");
	ucontext_other.uc_stack.ss_sp = new_stack();
	ucontext_other.uc_stack.ss_size = STACK_SIZE;
	ucontext_other.uc_link = NULL;
	makecontext(&ucontext_other, other_ucontext, 0);
}

static __attribute__((noinline)) void loop_ucontext(long round_trips)
{
	for (long i = 0; i < round_trips; i++)
		swapcontext(&ucontext_main, &ucontext_other);
}

/* ---- two kernel threads handing a turn to each other ---- */

static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_changed = PTHREAD_COND_INITIALIZER;
static enum { MAIN_TURN, OTHER_TURN, STOP } turn = MAIN_TURN;
static pthread_t other_thread;

static void *other_threads(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&turn_lock);
	for (;;) {
		while (turn == MAIN_TURN)
			pthread_cond_wait(&turn_changed, &turn_lock);
		if (turn == STOP)
			break;
		turn = MAIN_TURN;
		pthread_cond_signal(&turn_changed);
	}
	pthread_mutex_unlock(&turn_lock);
	return NULL;
}

static void setup_threads(void)
{
	errno = pthread_create(&other_thread, NULL, other_threads, NULL);
	if (errno != 0)
		die("pthread_create");
}

static __attribute__((noinline)) void loop_threads(long round_trips)
{
	pthread_mutex_lock(&turn_lock);
	for (long i = 0; i < round_trips; i++) {
		turn = OTHER_TURN;
		pthread_cond_signal(&turn_changed);
		while (turn == OTHER_TURN)
			pthread_cond_wait(&turn_changed, &turn_lock);
	}
	pthread_mutex_unlock(&turn_lock);
}

static void finish_threads(void)
{
	pthread_mutex_lock(&turn_lock);
	turn = STOP;
	pthread_cond_signal(&turn_changed);
	pthread_mutex_unlock(&turn_lock);
	pthread_join(other_thread, NULL);
}

/* ---- measuring ---- */

struct way {
	const char *key;	/* for --count */
	const char *name;	/* in the table */
	void (*setup)(void);
	void (*loop)(long round_trips);
	void (*finish)(void);
	struct deep *deep;	/* a deep way: setup_deep() and loop_deep() on this */
	long round_trips;	/* per run, to last about RUN_SECONDS */
	double ns[RUNS];	/* per switch, in each run */
};

#if defined(__x86_64__)
static const char asm_name[] = "co_switch (ch. 04), pop + jmp";
static const char variant_name[] = "co_switch ending in ret";
static const char deep_asm_one_name[] = "  2 calls deep, 1 site: pop + jmp";
static const char deep_variant_one_name[] = "  2 calls deep, 1 site: ret";
static const char deep_asm_two_name[] = "  2 calls deep, 2 sites: pop + jmp";
static const char deep_variant_two_name[] = "  2 calls deep, 2 sites: ret";
#else
static const char asm_name[] = "co_switch (ch. 04), ret";
static const char variant_name[] = "co_switch ending in br x30";
static const char deep_asm_one_name[] = "  2 calls deep, 1 site: ret";
static const char deep_variant_one_name[] = "  2 calls deep, 1 site: br x30";
static const char deep_asm_two_name[] = "  2 calls deep, 2 sites: ret";
static const char deep_variant_two_name[] = "  2 calls deep, 2 sites: br x30";
#endif

static void way_setup(struct way *w)
{
	if (w->deep != NULL)
		setup_deep(w->deep);
	else
		w->setup();
}

static void way_loop(struct way *w, long round_trips)
{
	if (w->deep != NULL)
		loop_deep(w->deep, round_trips);
	else
		w->loop(round_trips);
}

static struct way ways[] = {
	{ "asm", asm_name, setup_asm, loop_asm, NULL, NULL, 0, { 0 } },
	{ "variant", variant_name, setup_variant, loop_variant, NULL, NULL, 0, { 0 } },
	{ "deep_asm_one", deep_asm_one_name, NULL, NULL, NULL, &deep_jmp_one, 0, { 0 } },
	{ "deep_variant_one", deep_variant_one_name, NULL, NULL, NULL, &deep_ret_one, 0, { 0 } },
	{ "deep_asm_two", deep_asm_two_name, NULL, NULL, NULL, &deep_jmp_two, 0, { 0 } },
	{ "deep_variant_two", deep_variant_two_name, NULL, NULL, NULL, &deep_ret_two, 0, { 0 } },
	{ "setjmp", "_setjmp/_longjmp (ch. 03)", setup_setjmp, loop_setjmp, NULL, NULL, 0, { 0 } },
#ifdef BENCH_BOOST_CONTEXT
	{ "boost", "Boost.Context jump_fcontext", setup_boost, loop_boost, NULL, NULL, 0, { 0 } },
#endif
	{ "ucontext", "swapcontext (ucontext)", setup_ucontext, loop_ucontext, NULL, NULL, 0, { 0 } },
	{ "threads", "two threads, mutex + condvar", setup_threads, loop_threads, finish_threads, NULL,
	  0, { 0 } },
};
enum { WAYS = sizeof ways / sizeof ways[0] };

/* The CPU time of the whole process (both threads, in the last way): on a
 * busy machine the time other programs run in between is left out. */
static double seconds_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double time_run(struct way *w, long round_trips)
{
	double start = seconds_now();
	way_loop(w, round_trips);
	return seconds_now() - start;
}

/* Double the round trips until a run lasts at least RUN_SECONDS / 4, then
 * scale to about RUN_SECONDS. */
static void calibrate(struct way *w)
{
	long n = 1000;
	double took;
	while ((took = time_run(w, n)) < RUN_SECONDS / 4)
		n *= 2;
	w->round_trips = (long)((double)n * RUN_SECONDS / took) + 1;
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const double *values)
{
	double sorted[RUNS];
	memcpy(sorted, values, sizeof sorted);
	qsort(sorted, RUNS, sizeof sorted[0], compare_doubles);
	return sorted[RUNS / 2];
}

/* Run on one CPU, the last this process may use: a context switch within a
 * thread never moves, and the thread hand-off then costs a switch in the
 * kernel, not a wake-up on another CPU. */
static int pin_to_one_cpu(void)
{
	cpu_set_t allowed;
	if (sched_getaffinity(0, sizeof allowed, &allowed) < 0)
		die("sched_getaffinity");
	int cpu = CPU_SETSIZE - 1;
	while (cpu > 0 && !CPU_ISSET(cpu, &allowed))
		cpu--;
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof one, &one) < 0)
		die("sched_setaffinity");
	return cpu;
}

static void print_table(int cpu)
{
	double asm_ns = median(ways[0].ns);
	printf("One context switch (a round trip is two), on CPU %d only: the median of %d runs\n"
	       "of about %.0f ms of CPU time each, the ways taking turns.\n\n",
	       cpu, RUNS, RUN_SECONDS * 1e3);
	printf("  %-32s %10s %10s %18s\n", "way", "ns/switch", "vs ch. 04", "runs: min..max");
	for (int i = 0; i < WAYS; i++) {
		struct way *w = &ways[i];
		double lo = w->ns[0], hi = w->ns[0];
		for (int r = 1; r < RUNS; r++) {
			lo = w->ns[r] < lo ? w->ns[r] : lo;
			hi = w->ns[r] > hi ? w->ns[r] : hi;
		}
		char range[32];
		snprintf(range, sizeof range, "%.1f..%.1f", lo, hi);
		double ns = median(w->ns);
		printf("  %-32s %10.1f %9.2fx %18s\n", w->name, ns, ns / asm_ns, range);
	}
#ifndef BENCH_BOOST_CONTEXT
	printf("\n  Boost.Context: not measured, libboost_context was not found when this\n"
	       "  was built (Debian: apt-get install libboost-context-dev).\n");
#endif
}

/* bench_switch --count WAY N: prints the way's name, then makes N round
 * trips in loop_WAY. Exits 2 for a way this build does not have. */
static int count_only(const char *key, const char *n)
{
	for (int i = 0; i < WAYS; i++) {
		if (strcmp(ways[i].key, key) != 0)
			continue;
		printf("%s\n", ways[i].name);
		fflush(stdout);
		way_setup(&ways[i]);
		way_loop(&ways[i], strtol(n, NULL, 10));
		if (ways[i].finish != NULL)
			ways[i].finish();
		return 0;
	}
	fprintf(stderr, "bench_switch: this build has no way called %s\n", key);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--count") == 0)
		return count_only(argv[2], argv[3]);
	if (argc != 1) {
		fprintf(stderr, "usage: bench_switch [--count WAY ROUND_TRIPS]\n");
		return 2;
	}
	int cpu = pin_to_one_cpu();
	for (int i = 0; i < WAYS; i++) {
		way_setup(&ways[i]);
		calibrate(&ways[i]);
	}
	for (int r = 0; r < RUNS; r++)
		for (int i = 0; i < WAYS; i++)
			ways[i].ns[r] = time_run(&ways[i], ways[i].round_trips) * 1e9 /
					(2.0 * (double)ways[i].round_trips);
	for (int i = 0; i < WAYS; i++)
		if (ways[i].finish != NULL)
			ways[i].finish();
	print_table(cpu);
	return 0;
}
