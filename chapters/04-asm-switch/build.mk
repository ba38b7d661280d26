# Chapter 04 switches stacks in assembly: one file per CPU, picked by the
# compiler's target (ARCH=aarch64 with CC=aarch64-linux-gnu-gcc, for instance).
CHAPTER_STD := -std=gnu11
echo_server_SRCS := echo_server.c co.c switch_$(ARCH).S
