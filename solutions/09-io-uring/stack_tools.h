/* Telling Valgrind and AddressSanitizer about coroutine stacks (from chapter
 * 03). Both follow "the stack" through the stack pointer. When it jumps into
 * memory they did not know held a stack, Valgrind warns "client switching
 * stacks?" and may report nonsense, and ASan reports false stack errors. These
 * calls tell them; built without either tool they compile to nothing. */
#ifndef STACK_TOOLS_H
#define STACK_TOOLS_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define STACK_TOOLS_VALGRIND 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define STACK_TOOLS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_TOOLS_ASAN 1
#endif
#endif
#ifdef STACK_TOOLS_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

/* What the tools need to remember about one stack. */
struct stack_tools {
	unsigned valgrind_id;
	void *asan_fake_stack;  /* ASan's shadow frames of a stack we left */
};

/* [low, low + size) is a new stack. */
static inline void stack_tools_created(struct stack_tools *t, void *low, size_t size)
{
#ifdef STACK_TOOLS_VALGRIND
	t->valgrind_id = VALGRIND_STACK_REGISTER(low, (char *)low + size);
#else
	(void)t, (void)low, (void)size;
#endif
}

static inline void stack_tools_destroyed(struct stack_tools *t)
{
#ifdef STACK_TOOLS_VALGRIND
	VALGRIND_STACK_DEREGISTER(t->valgrind_id);
#else
	(void)t;
#endif
}

/* Right before leaving the current stack, `from`, for [low, low + size).
 * for_good: the current stack will never run again (its coroutine ended). */
static inline void stack_tools_leave(struct stack_tools *from, bool for_good,
				     const void *low, size_t size)
{
#ifdef STACK_TOOLS_ASAN
	__sanitizer_start_switch_fiber(for_good ? NULL : &from->asan_fake_stack, low, size);
#else
	(void)from, (void)for_good, (void)low, (void)size;
#endif
}

/* First thing on arriving at stack `to`; reports the bounds of the stack we
 * came from when from_low and from_size are not NULL. */
static inline void stack_tools_arrived(struct stack_tools *to, const void **from_low,
				       size_t *from_size)
{
#ifdef STACK_TOOLS_ASAN
	__sanitizer_finish_switch_fiber(to->asan_fake_stack, from_low, from_size);
#else
	(void)to, (void)from_low, (void)from_size;
#endif
}

#endif
