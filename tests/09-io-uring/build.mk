# The coroutine tests, shared with chapters 03 to 08, and the hub's rules,
# shared with chapters 05 on, link the chapter's coroutines and hub (on
# io_uring where the kernel allows it); so does this chapter's own hub test.
# test_uring_server starts the server binary, and through without_io_uring,
# a wrapper that forbids io_uring_setup as a container's seccomp profile does.
USES_SUITES := coroutines hub
test_co_LINK := $(HUB_SRCS)
test_co_LIBS := -pthread $(URING_LIBS)
test_hub_rules_LINK := $(HUB_SRCS)
test_hub_rules_LIBS := -pthread $(URING_LIBS)
test_uring_LINK := $(HUB_SRCS) $(SYNC_SRCS)
test_uring_LIBS := -pthread $(URING_LIBS)
test_uring_server_LIBS := $(URING_LIBS)
PROGRAMS += without_io_uring
without_io_uring_SRCS := tests/09-io-uring/without_io_uring.c
