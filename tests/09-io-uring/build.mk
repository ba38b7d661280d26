# The coroutine tests, shared with chapters 03 to 08, and the hub's rules,
# shared with chapters 05 on, link the chapter's coroutines and hub (on
# io_uring where the kernel allows it); so does this chapter's own hub test.
# The hub's rules run once more on a machine without io_uring, where the hub
# opens on epoll (test_hub_rules_on_epoll: on_epoll.c forbids io_uring_setup
# before main). test_uring_server starts the server binary, and through
# without_io_uring, a wrapper that forbids io_uring_setup as a container's
# seccomp profile does.
USES_SUITES := coroutines hub
test_co_LINK := $(HUB_SRCS)
test_co_LIBS := -pthread $(URING_LIBS)
test_hub_rules_LINK := $(HUB_SRCS)
test_hub_rules_LIBS := -pthread $(URING_LIBS)
TESTS += test_hub_rules_on_epoll
test_hub_rules_on_epoll_LINK := $(HUB_SRCS)
test_hub_rules_on_epoll_HELPERS := on_epoll forbid_io_uring
test_hub_rules_on_epoll_LIBS := -pthread $(URING_LIBS)
test_uring_LINK := $(HUB_SRCS) $(SYNC_SRCS)
test_uring_LIBS := -pthread $(URING_LIBS)
test_uring_server_LIBS := $(URING_LIBS)
PROGRAMS += without_io_uring
without_io_uring_SRCS := tests/09-io-uring/without_io_uring.c tests/09-io-uring/forbid_io_uring.c

# The same source as test_hub_rules, another binary.
$(OUT)/tests/test_hub_rules_on_epoll.o: tests/hub/test_hub_rules.c $(OUT)/flags
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

# The wrapper's objects: from this folder, not the chapter's.
$(OUT)/obj/tests/09-io-uring/%.o: tests/09-io-uring/%.c $(OUT)/flags
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -c $< -o $@
test_uring_multishot_LINK := $(HUB_SRCS)
test_uring_multishot_LIBS := -pthread $(URING_LIBS)
# The echo and adversarial suites once more, against the server reading its
# sockets with multishot recvs (-r 1, hub_uring_multishot()).
RERUN_TESTS := test_echo test_adversarial
RERUN_ARGS := -r 1
