# Some tests preload the thread-order shim (thread_order.c) into the server:
# it is built next to the server, where th_build_path() finds it, and like
# the short-I/O shim without the sanitizers, whose runtimes insist on being
# loaded first. It has a soname: Valgrind replaces free() in every object
# without one, and the shim must see the server's calls to free().
$(OUT)/thread_order.so: $(TESTS_DIR)/thread_order.c $(OUT)/flags
	$(CC) -std=gnu11 -O2 $(DEBUG) $(WARNINGS) -fPIC -shared -Wl,-soname,thread_order.so $< -o $@ \
		-ldl -pthread
build: $(OUT)/thread_order.so
