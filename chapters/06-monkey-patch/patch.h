/* Chapter 06: monkey patching, shared by patch_io.c, patch_threads.c,
 * patch_start.c and offload.c. The same sources are built twice:
 *
 *   libgreen.so (-DPATCH_PRELOAD): loaded with LD_PRELOAD ahead of libc, so
 *   the dynamic linker binds the program's calls to read, pthread_create...
 *   to our definitions; the real ones are the next definitions in the
 *   search order, found with dlsym(RTLD_NEXT, name).
 *
 *   linked in (no flag): the program is linked with -Wl,--wrap=read and so
 *   on, so the static linker sends its calls to __wrap_read, and __real_read
 *   is libc's read.
 *
 * PATCHED(name) names our definition, REAL(name) the real function. */
#ifndef PATCH_H
#define PATCH_H

#include <stdbool.h>

#ifdef PATCH_PRELOAD
/* Everything else in libgreen.so is hidden (-fvisibility=hidden): only the
 * patched calls are visible to the dynamic linker. */
#define PATCHED(name) __attribute__((visibility("default"))) name
#define REAL(name) (*(__typeof__(&name))patch_next(&patch_real_##name, #name))
#define PATCH_REAL(name) static void *patch_real_##name
#else
#define PATCHED(name) __wrap_##name
#define REAL(name) __real_##name
#define PATCH_REAL(name) extern __typeof__(name) __real_##name
#endif

/* The definition of name after libgreen.so's (normally libc's), looked up
 * once and kept in *slot. Exits with a message if there is none. */
void *patch_next(void **slot, const char *name);

/* True where a patched call may park instead of blocking: on the hub's
 * kernel thread, inside a coroutine. Elsewhere (before main, after it, on a
 * worker thread of offload.c) the patched calls behave like the real ones. */
bool patch_can_park(void);

/* Called by patch_start.c on the thread that runs the hub. */
void patch_hub_thread(void);

/* Start the program's main as the first green thread, detached; when it
 * returns, exit() with its status, as a return from main does. */
int patch_start_main(int (*main_fn)(int, char **, char **), int argc, char **argv, char **envp);

#endif
