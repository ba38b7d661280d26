# The coroutine tests, shared with chapters 03 and 04, the hub's rules,
# shared with the chapters after, and this chapter's hub tests link the
# chapter's coroutines, hub and green calls directly; the timer heap's tests
# link its heap alone.
USES_SUITES := coroutines hub
test_co_LINK := $(HUB_SRCS)
test_hub_rules_LINK := $(HUB_SRCS)
test_hub_rules_LIBS := -pthread
test_hub_LINK := $(HUB_SRCS)
test_timers_LINK := timers.c
test_co_LIBS := -pthread
# test_hub's realloc() always moves the block (see __wrap_realloc there).
test_hub_LIBS := -pthread -Wl,--wrap=realloc
