# The coroutine tests, shared with chapters 03 to 07, and the hub's rules,
# shared with chapters 05 to 07, link the chapter's coroutines and hub; the mailbox tests link the mailbox too. test_multicore
# starts the server binary.
USES_SUITES := coroutines hub
test_co_LINK := $(HUB_SRCS)
test_co_LIBS := -pthread
test_hub_rules_LINK := $(HUB_SRCS)
test_hub_rules_LIBS := -pthread
test_mailbox_LINK := $(HUB_SRCS) mailbox.c
test_mailbox_LIBS := -pthread
# late_threads.so, preloaded into the server by one test, makes every new
# thread start late. Built like the short-I/O shim: without the sanitizers.
$(OUT)/late_threads.so: tests/08-multicore/late_threads.c $(OUT)/flags
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(DEBUG) $(WARNINGS) -fPIC -shared $< -o $@ -ldl -pthread

build: $(OUT)/late_threads.so
