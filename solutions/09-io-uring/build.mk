# Chapter 05: the server, on coroutines (co.c), the hub (hub.c, timers.c),
# green socket calls (green.c), the dump and watchdog (inspect.c) and the
# switch from chapter 04. Chapter 07: wait queues (waitq.c) and the
# primitives built on them (event.c, chan.c, sem.c, pool.c; sync.h).
# Chapter 09: the hub's two backends (backend.h), epoll (hub_epoll.c) and
# io_uring (hub_uring.c), on liburing: Debian's liburing-dev, which
# tools/install-deps.sh installs, found with pkg-config.
CHAPTER_STD := -std=gnu11
URING_LIBS := $(shell $(or $(CROSS_PKG_CONFIG),pkg-config) --libs liburing 2>/dev/null)
ifeq ($(URING_LIBS),)
$(error chapter 09 needs liburing (Debian: liburing-dev): run tools/install-deps.sh)
endif
HUB_SRCS := co.c hub.c hub_epoll.c hub_uring.c timers.c green.c inspect.c switch_$(ARCH).S
SYNC_SRCS := waitq.c event.c chan.c sem.c pool.c
echo_server_SRCS := echo_server.c $(HUB_SRCS) $(SYNC_SRCS)
echo_server_LIBS := -pthread $(URING_LIBS)
