# The coroutine tests link the chapter's coroutines directly.
test_co_LINK := co.c
