/* Chapter 09's tests: a machine without io_uring, for this process and every
 * program it executes (a seccomp filter survives exec), nothing else
 * forbidden. */
#ifndef FORBID_IO_URING_H
#define FORBID_IO_URING_H

/* From now on io_uring_setup fails with EPERM. 0, or -1 with errno (qemu-user
 * refuses seccomp filters: EINVAL). */
int forbid_io_uring_setup(void);

#endif
