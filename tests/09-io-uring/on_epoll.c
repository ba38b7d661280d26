/* Chapter 09's tests: linked into a test binary, it makes the process a
 * machine without io_uring before main() runs, so that co_run()'s hub opens
 * on epoll: test_hub_rules_on_epoll holds the epoll backend to the hub's
 * rules (tests/hub), as test_hub_rules holds the io_uring one. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "forbid_io_uring.h"

__attribute__((constructor)) static void run_on_epoll(void)
{
	/* qemu-user refuses the filter, and io_uring too (ENOSYS): there the
	 * hub is on epoll anyway. Anywhere else, say that it may not be. */
	if (forbid_io_uring_setup() < 0)
		fprintf(stderr, "on_epoll: cannot forbid io_uring_setup (%s): the hub opens on "
			"io_uring if the kernel allows it\n", strerror(errno));
}
