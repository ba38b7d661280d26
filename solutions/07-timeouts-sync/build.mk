# Chapter 05: the server, on coroutines (co.c), the hub (hub.c, timers.c),
# green socket calls (green.c), the dump and watchdog (inspect.c) and the
# switch from chapter 04. Chapter 07: wait queues (waitq.c) and the
# primitives built on them (event.c, chan.c, sem.c, pool.c; sync.h).
CHAPTER_STD := -std=gnu11
HUB_SRCS := co.c hub.c timers.c green.c inspect.c switch_$(ARCH).S
SYNC_SRCS := waitq.c event.c chan.c sem.c pool.c
echo_server_SRCS := echo_server.c $(HUB_SRCS) $(SYNC_SRCS)
echo_server_LIBS := -pthread
