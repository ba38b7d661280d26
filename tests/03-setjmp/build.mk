# The coroutine tests, shared with the later chapters, link this chapter's
# coroutines directly.
USES_SUITES := coroutines
test_co_LINK := co.c
