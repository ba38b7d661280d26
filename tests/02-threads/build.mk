# Some tests preload the thread-order shim (thread_order.c) into the server:
# it is built next to the server, where th_build_path() finds it, and like
# the short-I/O shim without the sanitizers, whose runtimes insist on being
# loaded first.
$(OUT)/thread_order.so: $(TESTS_DIR)/thread_order.c $(OUT)/flags
	$(CC) -std=gnu11 -O2 $(DEBUG) $(WARNINGS) -fPIC -shared $< -o $@ -ldl -pthread
build: $(OUT)/thread_order.so
