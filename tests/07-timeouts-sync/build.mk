# The coroutine tests, shared with chapters 03 to 05, and the hub's rules,
# shared with chapters 05 to 08, link the chapter's coroutines and hub; this chapter's primitive tests link its wait queues
# and primitives too. test_shutdown starts the server binary.
USES_SUITES := coroutines hub
test_co_LINK := $(HUB_SRCS)
test_co_LIBS := -pthread
test_hub_rules_LINK := $(HUB_SRCS)
test_hub_rules_LIBS := -pthread
test_sync_LINK := $(HUB_SRCS) $(SYNC_SRCS)
test_sync_LIBS := -pthread
