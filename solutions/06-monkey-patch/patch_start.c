/* Chapter 06: getting the program's main onto the hub. Before main runs, we
 * take over: the hub's kernel thread runs the scheduler, and main becomes
 * the first green thread. With LD_PRELOAD we interpose __libc_start_main,
 * the libc function that the program's entry point (_start) calls with the
 * address of main; linked in, -Wl,--wrap=main sends _start's reference to
 * main to __wrap_main instead. */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "co.h"
#include "patch.h"

/* Set on the one kernel thread that runs the hub: worker threads (and a
 * program's threads before main) see false. */
static __thread bool on_hub;

#ifdef PATCH_PRELOAD
void *patch_next(void **slot, const char *name)
{
	if (*slot != NULL)
		return *slot;
	void *fn = dlsym(RTLD_NEXT, name);
	if (fn == NULL) {
		fprintf(stderr, "libgreen: no definition of %s after ours: %s\n", name, dlerror());
		abort();
	}
	*slot = fn;
	return fn;
}
#endif

void patch_hub_thread(void)
{
	on_hub = true;
}

bool patch_can_park(void)
{
	return on_hub && co_self() != 0;
}

/* Run the program: main as a green thread, the scheduler on this thread's
 * own stack until every green thread has ended. */
static int run_program(int (*main_fn)(int, char **, char **), int argc, char **argv, char **envp)
{
	/* EXERCISE start_main: run main as a green thread on the hub.
	 * Mark this kernel thread as the hub's (patch_hub_thread()), start
	 * main with patch_start_main(main_fn, argc, argv, envp) (on failure
	 * print "libgreen: cannot start main" and return EXIT_FAILURE), then
	 * co_run() until every green thread has ended: return EXIT_SUCCESS if
	 * it returns 0, EXIT_FAILURE if it reports that they all wait for
	 * something that can never happen (-1).
	 * Hint: main returning does not come back here: run_main() in
	 * patch_threads.c calls exit() with its status, as returning from main
	 * does; co_run() returns only when main ended with pthread_exit().
	 * Tests: join_returns_the_thread_value, serves_ten_thousand_clients_on_one_thread,
	 * preloaded_server_survives_short_reads_and_writes, and those of what cannot be
	 * patched, which need green threads to show it: raw_syscall_read_blocks_every_green_thread,
	 * spinning_thread_starves_the_others, yielding_spinner_lets_the_others_run,
	 * offload_lets_others_run_during_a_blocking_call, offload_resolves_a_name.
	 */
	patch_hub_thread();
	if (patch_start_main(main_fn, argc, argv, envp) < 0) {
		fprintf(stderr, "libgreen: cannot start main\n");
		return EXIT_FAILURE;
	}
	return co_run() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
	/* STUB: return main_fn(argc, argv, envp); */
	/* END start_main */
}

#ifdef PATCH_PRELOAD
typedef int main_type(int, char **, char **);
static main_type *program_main;

static int green_main(int argc, char **argv, char **envp)
{
	return run_program(program_main, argc, argv, envp);
}

/* glibc's entry point, as _start calls it (csu/libc-start.c); we hand it
 * green_main instead of main, and pass everything else on. */
__attribute__((visibility("default"))) int
__libc_start_main(main_type *main_fn, int argc, char **argv, void (*init)(void),
		  void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
	static void *slot;
	int (*real)(main_type *, int, char **, void (*)(void), void (*)(void), void (*)(void),
		    void *) = patch_next(&slot, "__libc_start_main");
	program_main = main_fn;
	return real(green_main, argc, argv, init, fini, rtld_fini, stack_end);
}
#else
int __real_main(int argc, char **argv, char **envp);

int __wrap_main(int argc, char **argv, char **envp)
{
	return run_program(__real_main, argc, argv, envp);
}
#endif
