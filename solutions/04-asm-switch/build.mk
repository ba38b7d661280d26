# Chapter 04 switches stacks in assembly: one file per CPU, picked by the
# compiler's target (ARCH=aarch64 with CC=aarch64-linux-gnu-gcc, for instance).
CHAPTER_STD := -std=gnu11
echo_server_SRCS := echo_server.c co.c switch_$(ARCH).S

# The chapter's switch, assembled once more with -D flags, for the
# demonstrations below: $(call switch_variant,OBJECT,FLAGS). Each variant
# gets names of its own, so that a program can link it next to the original.
VARIANT_NAMES := -Dco_switch=co_switch_variant -Dco_fp_control_now=co_fp_control_now_variant \
	-Dco_start=co_start_variant
define switch_variant
$(OUT)/obj/$(1).o: $(SRC)/switch_$(ARCH).S $(OUT)/flags $(SRC)/build.mk
	@mkdir -p $$(@D)
	$$(CC) $$(CHAPTER_CFLAGS) $(2) -c $$< -o $$@
endef

# make pitfalls: small programs, each getting one thing wrong on purpose;
# pitfalls/run.sh runs them and checks that each shows its symptom.
PITFALLS := fortify_longjmp misaligned_frame rounding_kept rounding_leak \
	valgrind_stacks valgrind_stacks_unregistered
fortify_longjmp_SRCS := pitfalls/fortify_longjmp.c
misaligned_frame_SRCS := pitfalls/misaligned_frame.c switch_$(ARCH).S
rounding_kept_SRCS := pitfalls/rounding_leak.c co.c switch_$(ARCH).S
rounding_kept_LIBS := -lm
# rounding_leak: the same program on the chapter's switch with every
# instruction that stores or loads the floating-point control state made
# harmless: on x86-64 each becomes nopl, a no-op that takes the same memory
# operand; on AArch64 the FPCR's accesses go to the FPSR, which holds only
# status flags. The frame's layout stays, the rounding mode is no longer
# saved, and nothing else changes.
NO_FP_CONTROL_x86_64 := -Dstmxcsr=nopl -Dldmxcsr=nopl -Dvstmxcsr=nopl -Dvldmxcsr=nopl \
	-Dfnstcw=nopl -Dfstcw=nopl -Dfldcw=nopl
NO_FP_CONTROL_aarch64 := -Dfpcr=fpsr
rounding_leak_SRCS := pitfalls/rounding_leak.c co.c pitfalls/switch_no_fp_control.S
rounding_leak_LIBS := -lm
$(eval $(call switch_variant,pitfalls/switch_no_fp_control,$(NO_FP_CONTROL_$(ARCH))))
valgrind_stacks_SRCS := pitfalls/valgrind_stacks.c co.c switch_$(ARCH).S
valgrind_stacks_unregistered_SRCS := pitfalls/valgrind_stacks.c pitfalls/co_unregistered.c \
	switch_$(ARCH).S
# One file built as Ubuntu's compilers build everything: the setjmp switch
# then aborts. (-U first: where it is already on, redefining it would warn.)
$(OUT)/obj/pitfalls/fortify_longjmp.o: CHAPTER_CFLAGS += -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2
$(OUT)/obj/pitfalls/fortify_longjmp.o: $(SRC)/build.mk

# make bench-switch: the cost of one switch, five or six ways
# (bench/bench_switch.c), then in instructions (bench/callgrind.sh). The
# second way is the chapter's switch with its other ending (see the end of
# switch_$(ARCH).S), as co_switch_variant.
OTHER_ENDING_x86_64 := -DCO_SWITCH_ENDS_IN_RET
OTHER_ENDING_aarch64 := -DCO_SWITCH_ENDS_IN_BR
bench_switch_SRCS := bench/bench_switch.c switch_$(ARCH).S bench/switch_variant.S
bench_switch_LIBS := -pthread
$(eval $(call switch_variant,bench/switch_variant,$(VARIANT_NAMES) $(OTHER_ENDING_$(ARCH))))
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
