# Chapter 06 builds chapter 02's and chapter 01's servers from their own,
# unchanged source (frozen copies, below), patched at link time, and the
# same patch as a preload library. The hub is chapter 05's (co.c, hub.c, timers.c, inspect.c and the
# switch); the patch is patch_*.c and offload.c.
CHAPTER_STD := -std=gnu11
HUB_SRCS := co.c hub.c timers.c inspect.c switch_$(ARCH).S
PATCH_SRCS := patch_io.c patch_threads.c patch_start.c offload.c

# The servers are chapter 02's and chapter 01's, solved, as this chapter
# ships them: threads_server.c and serial_server.c are frozen copies of
# solutions/02-threads/echo_server.c and solutions/01-blocking/echo_server.c
# (tools/starter.sh freeze), so the chapter builds the same whatever the
# student's own chapters 01 and 02 hold.
THREADS_SERVER := threads_server.c
SERIAL_SERVER := serial_server.c

# The calls the patch replaces. Linked in, -Wl,--wrap=read makes the linker
# send every call to read in the objects it links to __wrap_read, and
# __real_read to libc's read; main is wrapped to start the hub first.
PATCHED_CALLS := main socket pipe pipe2 accept accept4 read write recv send connect poll \
	close fclose close_range dup2 dup3 fcntl nanosleep usleep sleep sigwait pthread_create \
	pthread_join pthread_detach pthread_exit pthread_self pthread_mutex_init \
	pthread_mutex_destroy pthread_mutex_lock pthread_mutex_trylock pthread_mutex_timedlock \
	pthread_mutex_clocklock pthread_mutex_unlock pthread_cond_init pthread_cond_destroy \
	pthread_cond_wait pthread_cond_timedwait pthread_cond_clockwait pthread_cond_signal \
	pthread_cond_broadcast
comma := ,
PATCH_LDFLAGS := $(foreach call,$(PATCHED_CALLS),-Wl$(comma)--wrap=$(call)) -pthread

# echo_server: chapter 02's server, patched at link time; the shared suites
# and make compare run it as chapter 06's server. threads_server: the same
# source, not patched, for LD_PRELOAD=libgreen.so. serial_server: chapter
# 01's server, patched at link time. patch_demo: the lesson's small demos;
# patch_rules: what else programs of kernel threads rely on, kept.
PROGRAMS := echo_server threads_server serial_server patch_demo patch_rules
echo_server_SRCS := $(THREADS_SERVER) $(PATCH_SRCS) $(HUB_SRCS)
echo_server_LIBS := $(PATCH_LDFLAGS)
threads_server_SRCS := $(THREADS_SERVER)
threads_server_LIBS := -pthread
serial_server_SRCS := $(SERIAL_SERVER) $(PATCH_SRCS) $(HUB_SRCS)
serial_server_LIBS := $(PATCH_LDFLAGS)
patch_demo_SRCS := patch_demo.c $(PATCH_SRCS) $(HUB_SRCS)
patch_demo_LIBS := $(PATCH_LDFLAGS)
patch_rules_SRCS := patch_rules.c $(PATCH_SRCS) $(HUB_SRCS)
patch_rules_LIBS := $(PATCH_LDFLAGS)

# libgreen.so: the same sources again, compiled for a shared library with
# -DPATCH_PRELOAD (the real functions come from dlsym(RTLD_NEXT)), every
# symbol hidden but the patched calls. No sanitizers: their runtimes must
# come first in the process, and a preloaded library comes before them.
PRELOAD_CFLAGS = $(CHAPTER_STD) -O2 $(DEBUG) $(WARNINGS) -fPIC -fvisibility=hidden \
	-DPATCH_PRELOAD -MMD -MP -Icommon -iquote $(SRC) $(CFLAGS)
PRELOAD_OBJS := $(patsubst %,$(OUT)/preload/%.o,$(basename $(PATCH_SRCS) $(HUB_SRCS))) \
	$(patsubst common/%.c,$(OUT)/preload/common/%.o,$(wildcard common/*.c))

$(OUT)/preload/%.o: $(SRC)/%.c $(OUT)/flags
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) -c $< -o $@

$(OUT)/preload/%.o: $(SRC)/%.S $(OUT)/flags
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) -c $< -o $@

$(OUT)/preload/common/%.o: common/%.c $(OUT)/flags
	@mkdir -p $(@D)
	$(CC) $(PRELOAD_CFLAGS) -c $< -o $@

$(OUT)/libgreen.so: $(PRELOAD_OBJS)
	$(CC) -shared $^ -o $@ -ldl -pthread

build: $(OUT)/libgreen.so
