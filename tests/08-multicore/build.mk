# The coroutine tests, shared with chapters 03 to 07, link the chapter's
# coroutines and hub; the mailbox tests link the mailbox too. test_multicore
# starts the server binary.
USES_SUITES := coroutines
test_co_LINK := $(HUB_SRCS)
test_co_LIBS := -pthread
test_mailbox_LINK := $(HUB_SRCS) mailbox.c
test_mailbox_LIBS := -pthread
