# Chapter 05: the server, on coroutines (co.c), the hub (hub.c, timers.c),
# green socket calls (green.c), the dump and watchdog (inspect.c) and the
# switch from chapter 04.
CHAPTER_STD := -std=gnu11
HUB_SRCS := co.c hub.c timers.c green.c inspect.c switch_$(ARCH).S
echo_server_SRCS := echo_server.c $(HUB_SRCS)
echo_server_LIBS := -pthread
