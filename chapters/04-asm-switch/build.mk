# Chapter 04 switches stacks in assembly: one file per CPU, picked by the
# compiler's target (ARCH=aarch64 with CC=aarch64-linux-gnu-gcc, for instance).
CHAPTER_STD := -std=gnu11
echo_server_SRCS := echo_server.c co.c switch_$(ARCH).S

# make pitfalls: small programs, each getting one thing wrong on purpose;
# pitfalls/run.sh runs them and checks that each shows its symptom.
PITFALLS := fortify_longjmp misaligned_frame rounding_kept rounding_leak \
	valgrind_stacks valgrind_stacks_unregistered
fortify_longjmp_SRCS := pitfalls/fortify_longjmp.c
misaligned_frame_SRCS := pitfalls/misaligned_frame.c switch_$(ARCH).S
rounding_kept_SRCS := pitfalls/rounding_leak.c co.c switch_$(ARCH).S
rounding_kept_LIBS := -lm
rounding_leak_SRCS := pitfalls/rounding_leak.c co.c pitfalls/switch_no_fp_control_$(ARCH).S
rounding_leak_LIBS := -lm
valgrind_stacks_SRCS := pitfalls/valgrind_stacks.c co.c switch_$(ARCH).S
valgrind_stacks_unregistered_SRCS := pitfalls/valgrind_stacks.c pitfalls/co_unregistered.c \
	switch_$(ARCH).S
# One file built as Ubuntu's compilers build everything: the setjmp switch
# then aborts. (-U first: where it is already on, redefining it would warn.)
$(OUT)/obj/pitfalls/fortify_longjmp.o: CHAPTER_CFLAGS += -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2
$(OUT)/obj/pitfalls/fortify_longjmp.o: $(SRC)/build.mk

# make bench-switch: the cost of one switch, five or six ways
# (bench/bench_switch.c), then in instructions (bench/callgrind.sh).
bench_switch_SRCS := bench/bench_switch.c switch_$(ARCH).S bench/switch_variant_$(ARCH).S
bench_switch_LIBS := -pthread
# Boost.Context joins as the reference where the compiler finds its library
# (Debian: libboost-context-dev); the program builds without it. The stamp
# rebuilds the benchmark when that changes.
BOOST_CONTEXT := $(filter /%,$(shell $(CC) -print-file-name=libboost_context.so 2>/dev/null))
BOOST_STAMP := $(OUT)/obj/bench/boost-context
$(shell mkdir -p $(dir $(BOOST_STAMP)) && echo '$(BOOST_CONTEXT)' | cmp -s - $(BOOST_STAMP) || \
	echo '$(BOOST_CONTEXT)' > $(BOOST_STAMP))
$(OUT)/obj/bench/bench_switch.o: $(BOOST_STAMP)
ifneq ($(BOOST_CONTEXT),)
$(OUT)/obj/bench/bench_switch.o: CHAPTER_CFLAGS += -DBENCH_BOOST_CONTEXT
bench_switch_LIBS += -lboost_context
endif

PROGRAMS += $(PITFALLS) bench_switch

.PHONY: pitfalls bench-switch
pitfalls: $(addprefix $(OUT)/,$(PITFALLS))
	@sh $(SRC)/pitfalls/run.sh $(OUT)

bench-switch: $(OUT)/bench_switch
	@$(OUT)/bench_switch
	@sh $(SRC)/bench/callgrind.sh $(OUT)/bench_switch
