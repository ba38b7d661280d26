# The coroutine tests, shared with chapter 03, link the chapter's coroutines
# and its switch for this CPU. The switch tests include co.c instead (they
# reach into its scheduler) and link the switch, with a helper written in
# assembly.
USES_SUITES := coroutines
test_co_LINK := co.c switch_$(ARCH).S
test_switch_LINK := switch_$(ARCH).S
test_switch_HELPERS := regs_$(ARCH)
