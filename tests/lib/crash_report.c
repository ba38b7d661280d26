/* Backtraces from signal handlers; see crash_report.h. */
#define _GNU_SOURCE

#include "crash_report.h"

#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

enum { ALT_STACK_SIZE = 64 * 1024 };

void cr_write(int fd, const char *text)
{
	size_t len = strlen(text);
	while (len > 0) {
		ssize_t put = write(fd, text, len);
		if (put <= 0)
			return;	/* nowhere to report that; give up quietly */
		text += put;
		len -= (size_t)put;
	}
}

void cr_write_number(int fd, unsigned long value, int base)
{
	char digits[24];
	size_t at = sizeof digits - 1;
	digits[at] = '\0';
	do {
		digits[--at] = "0123456789abcdef"[value % (unsigned)base];
		value /= (unsigned)base;
	} while (value > 0 && at > 0);
	cr_write(fd, digits + at);
}

void cr_prepare(void)
{
	void *frame;
	backtrace(&frame, 1);
}

void cr_alternate_stack(void)
{
	void *stack = mmap(NULL, ALT_STACK_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		return;	/* handlers then run on the thread's own stack */
	stack_t alt = { .ss_sp = stack, .ss_size = ALT_STACK_SIZE };
	if (sigaltstack(&alt, NULL) < 0)
		munmap(stack, ALT_STACK_SIZE);
}

static void *interrupted_instruction(const void *ucontext)
{
	const ucontext_t *uc = ucontext;
#if defined(__x86_64__)
	return (void *)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (void *)uc->uc_mcontext.pc;
#else
	(void)uc;
	return NULL;
#endif
}

size_t cr_frames(const void *ucontext, void **frames, size_t max)
{
	/* The unwinder walks from here through the handler and the kernel's
	 * signal frame into the interrupted code; what comes before the
	 * interrupted instruction is this file's and the handler's. */
	void *all[CR_MAX_FRAMES + 8];
	int n = backtrace(all, (int)(sizeof all / sizeof all[0]));
	void *pc = interrupted_instruction(ucontext);
	int first = 0;
	while (first < n && all[first] != pc)
		first++;
	if (first == n) {	/* the unwinder lost its way: the instruction alone */
		frames[0] = pc;
		return max > 0 && pc != NULL ? 1 : 0;
	}
	size_t count = 0;
	for (int i = first; i < n && count < max; i++)
		frames[count++] = all[i];
	return count;
}

/* Which loaded file holds an address, and where that file was loaded. */
struct module {
	uintptr_t address;
	const char *path;	/* "" for the program itself */
	uintptr_t base;
	bool found;
};

static int find_module(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct module *m = data;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *segment = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + segment->p_vaddr;
		if (segment->p_type == PT_LOAD && m->address >= start &&
		    m->address < start + segment->p_memsz) {
			m->path = info->dlpi_name;
			m->base = info->dlpi_addr;
			m->found = true;
			return 1;
		}
	}
	return 0;
}

/* fork() runs the atfork handlers and takes locks of the C library, which a
 * signal handler must not; glibc 2.34 and later have _Fork(), which does not. */
static pid_t fork_from_handler(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
	return _Fork();
#else
	return fork();
#endif
}

/* Where a stack begins: below main(), a test's function (START_TEST(x)
 * defines x_fn) or a coroutine's first function, there is only the C
 * library's start-up, Check's runner, or a coroutine's first frame. */
static bool is_bottom(const char *line)
{
	static const char *const bottoms[] = { "main", "co_trampoline", "co_entry" };
	size_t name = strcspn(line, " ");
	if (name > 3 && strncmp(line + name - 3, "_fn", 3) == 0)
		return true;
	for (size_t i = 0; i < sizeof bottoms / sizeof bottoms[0]; i++)
		if (strlen(bottoms[i]) == name && strncmp(line, bottoms[i], name) == 0)
			return true;
	return false;
}

/* addr2line's answer for one address in a file, into line (empty if it
 * could not run). */
static void symbolize(const char *path, const char *hex, char *line, size_t size)
{
	line[0] = '\0';
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		return;
	pid_t pid = fork_from_handler();
	if (pid == 0) {
		int quiet = open("/dev/null", O_WRONLY);
		if (dup2(out[1], STDOUT_FILENO) < 0 || quiet < 0 || dup2(quiet, STDERR_FILENO) < 0)
			_exit(127);
		/* -f function, -i inlined callers too, -p one line, -C demangle,
		 * -s file names without their folders. */
		static const char *const tool[] = { "/usr/bin/addr2line", "addr2line" };
		for (size_t i = 0; i < sizeof tool / sizeof tool[0]; i++)
			execlp(tool[i], "addr2line", "-fipCs", "-e", path, hex, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	size_t len = 0;
	ssize_t got;
	while (pid > 0 && len < size - 1 &&
	       ((got = read(out[0], line + len, size - 1 - len)) > 0 || (got < 0 && errno == EINTR)))
		len += got > 0 ? (size_t)got : 0;
	close(out[0]);
	line[len] = '\0';
	int status = -1;
	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			continue;
	if (pid <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		line[0] = '\0';
}

/* Write one frame, "    #i function at file:line"; true if it is where
 * its stack begins. */
static bool write_frame(int fd, size_t i, const struct module *m, uintptr_t address)
{
	uintptr_t offset = address - m->base;
	char hex[2 + 2 * sizeof offset + 1] = "0x";
	size_t len = 2;
	for (int shift = (int)(8 * sizeof offset) - 4; shift >= 0; shift -= 4)
		if (len > 2 || (offset >> shift) != 0 || shift == 0)
			hex[len++] = "0123456789abcdef"[(offset >> shift) & 0xf];
	hex[len] = '\0';

	char line[1024];
	symbolize(m->path, hex, line, sizeof line);
	cr_write(fd, "    #");
	cr_write_number(fd, i, 10);
	cr_write(fd, " ");
	if (line[0] != '\0') {
		cr_write(fd, line);
		return is_bottom(line);
	}
	cr_write(fd, m->path);	/* no addr2line: the raw place */
	cr_write(fd, "+");
	cr_write(fd, hex);
	cr_write(fd, "\n");
	return false;
}

void cr_write_frames(int fd, void *const *frames, size_t n)
{
	static char program[512];
	ssize_t len = readlink("/proc/self/exe", program, sizeof program - 1);
	program[len > 0 ? len : 0] = '\0';
	bool in_program = false;
	for (size_t i = 0; i < n; i++) {
		/* A return address is the instruction after the call; the call
		 * is one byte before it at least. */
		uintptr_t address = (uintptr_t)frames[i] - (i > 0);
		struct module m = { .address = address };
		dl_iterate_phdr(find_module, &m);
		if (!m.found)
			break;	/* not code: the unwinder is lost */
		bool program_frame = m.path[0] == '\0';
		if (program_frame)
			m.path = program;
		/* Once in the program, a frame outside it is the C library's
		 * start-up or Check's runner: nobody's mistake. */
		if (in_program && !program_frame)
			break;
		in_program = program_frame;
		if (write_frame(fd, i, &m, address))
			break;
	}
}

void cr_write_crash(int fd, int signal, const siginfo_t *info, const void *ucontext)
{
	/* What is known goes out first: unwinding a smashed stack may fault
	 * again, and that second fault ends the process at once. */
	cr_write(fd, cr_signal_name(signal));
	if (signal == SIGSEGV || signal == SIGBUS) {
		cr_write(fd, " at address 0x");
		cr_write_number(fd, (unsigned long)info->si_addr, 16);
	}
	cr_write(fd, ", in:\n");
	void *frames[CR_MAX_FRAMES];
	size_t n = cr_frames(ucontext, frames, CR_MAX_FRAMES);
	cr_write_frames(fd, frames, n);
}

const char *cr_signal_name(int signal)
{
	switch (signal) {
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGFPE: return "SIGFPE";
	case SIGILL: return "SIGILL";
	case SIGABRT: return "SIGABRT";
	case SIGTRAP: return "SIGTRAP";
	case SIGSYS: return "SIGSYS";
	case SIGKILL: return "SIGKILL";
	case SIGTERM: return "SIGTERM";
	case SIGINT: return "SIGINT";
	case SIGPIPE: return "SIGPIPE";
	case SIGALRM: return "SIGALRM";
	case SIGUSR1: return "SIGUSR1";
	case SIGQUIT: return "SIGQUIT";
	}
	return "a signal";
}

const char *cr_signal_cause(int signal)
{
	switch (signal) {
	case SIGSEGV:
		return "memory that is not yours was touched: a NULL, freed or out-of-bounds pointer, "
		       "or a stack that overflowed. The backtrace's first line in your code is where";
	case SIGBUS:
		return "a misaligned or unbacked memory access: a pointer into memory that is not "
		       "what it should be";
	case SIGFPE:
		return "an integer division by zero (or INT_MIN / -1)";
	case SIGILL:
		return "the CPU met bytes that are not an instruction: a jump or a return to a "
		       "corrupted address, as when a stack is switched with the wrong pointer";
	case SIGABRT:
		return "abort(): an assert() failed, or the C library found its heap corrupted (a "
		       "double free, a write past the end of a malloc'd block); its own message "
		       "is on stderr just before";
	case SIGTRAP:
		return "a trap instruction ran: a coroutine's entry function returned into the "
		       "trap its first frame holds, or a debugger breakpoint";
	case SIGPIPE:
		return "a write to a connection the client had closed, with SIGPIPE not ignored";
	}
	return "";
}
