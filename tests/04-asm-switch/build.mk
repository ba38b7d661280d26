# The coroutine tests, shared with chapter 03, and this chapter's own switch
# tests link the chapter's coroutines and its switch for this CPU; the switch
# tests also need a helper written in assembly.
USES_SUITES := coroutines
test_co_LINK := co.c switch_$(ARCH).S
test_switch_LINK := co.c switch_$(ARCH).S
test_switch_HELPERS := regs_$(ARCH)
