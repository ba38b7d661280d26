# The hub's rules, shared with chapters 05, 07 and 08, link the chapter's
# coroutines and hub: the patch's green threads park in that hub.
USES_SUITES := hub
test_hub_rules_LINK := $(HUB_SRCS)
test_hub_rules_LIBS := -pthread
