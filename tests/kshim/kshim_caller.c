// SPDX-License-Identifier: MIT
/*
 * kshim_caller: a client of a kshim_echo node, for the devemu_kshim.ko
 * self-tests. It is built twice: for the host (kshim_caller) and, where gcc
 * has multilib, with -m32 (kshim_caller32), so that the module serves one
 * 64-bit and one 32-bit caller and must tell them apart. It checks:
 *   - a size-encoded ioctl (DEVEMU_IOC_NREAD) and FIONREAD (from the shadow);
 *   - a pointer-holding ioctl (KSHIM_TEST_IOC_REVERSE: the daemon asks for the
 *     struct, then for the buffer it points to, by their caller addresses);
 *   - DEVEMU_SQE_F_COMPAT on the open, write, read and ioctl requests of a
 *     32-bit caller and on none of a 64-bit one (KSHIM_TEST_IOC_CALLER: what
 *     kshim_echo saw);
 *   - the model's status words in sysfs (bytes queued, open files).
 * With --file-fifo, against kshim_hostile ffifo (per-file FIFOs of 24-byte
 * records): a 64-bit caller reads its file's records from the FIFO (two in
 * one read), a 32-bit caller's read goes as a READ request, whose answer is
 * the first record, taken back from the FIFO (one left for FIONREAD).
 *
 * Usage: kshim_caller [--file-fifo] NAME (the node is /dev/NAME, served by
 * kshim_echo with every feature). Prints one line per check; exit 0: all
 * passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devemu/uapi/devemu.h"
#include "kshim_test.h"

static int failures;
static const char *who;

static void check(int ok, const char *what)
{
	printf("%s %s: %s\n", ok ? "ok" : "FAIL", who, what);
	if (!ok)
		failures++;
}

/* The per-file FIFO checks (--file-fifo). */
static int file_fifo(int fd)
{
	char buf[100];
	int fionread = -1;
	ssize_t n;

	check(ioctl(fd, KSHIM_TEST_IOC_PUSH, 0xffff0002UL) == 2, "two records pushed into the file's FIFO");
	check(ioctl(fd, FIONREAD, &fionread) == 0 && fionread == 2 * KSHIM_TEST_RECORD, "FIONREAD: two records");
	n = read(fd, buf, sizeof(buf));
	if (sizeof(void *) == 4) {
		check(n == KSHIM_TEST_RECORD && !memcmp(buf, "f", 1),
		      "a 32-bit read goes as a request: one record, taken back from the FIFO");
		check(ioctl(fd, FIONREAD, &fionread) == 0 && fionread == KSHIM_TEST_RECORD,
		      "FIONREAD: the record the request did not take");
	} else {
		check(n == 2 * KSHIM_TEST_RECORD, "a 64-bit read takes both records from the FIFO");
	}
	close(fd);
	return failures ? 1 : 0;
}

/* The first two status words of /sys/class/devemu/NAME/status_words. */
static int status_words(const char *name, unsigned int *w0, unsigned int *w1)
{
	char path[128];
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/sys/class/devemu/%s/status_words", name);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fscanf(f, "%u %u", w0, w1);
	fclose(f);
	return n == 2 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const uint32_t compat_ops =
		1u << DEVEMU_OP_OPEN | 1u << DEVEMU_OP_WRITE | 1u << DEVEMU_OP_READ | 1u << DEVEMU_OP_IOCTL;
	int compat = sizeof(void *) == 4;
	char node[128], buf[16], data[] = "abcdef";
	struct kshim_test_rev rev = { .ptr = (uintptr_t)data, .len = 6 };
	unsigned int queued = 0, files = 0;
	uint32_t nread = 0, seen = 0;
	int fd, fionread = 0;

	int ffifo = argc == 3 && !strcmp(argv[1], "--file-fifo");

	if (argc != 2 && !ffifo) {
		fprintf(stderr, "usage: kshim_caller [--file-fifo] NAME\n");
		return 2;
	}
	argv += ffifo;
	who = compat ? "32-bit caller" : "64-bit caller";
	snprintf(node, sizeof(node), "/dev/%s", argv[1]);
	fd = open(node, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("FAIL %s: open %s: %s\n", who, node, strerror(errno));
		return 1;
	}

	if (ffifo)
		return file_fifo(fd);
	check(write(fd, "hello", 5) == 5, "write 5 bytes");
	check(ioctl(fd, DEVEMU_IOC_NREAD, &nread) == 0 && nread == 5, "DEVEMU_IOC_NREAD (size-encoded) says 5");
	check(ioctl(fd, FIONREAD, &fionread) == 0 && fionread == 5, "FIONREAD (from the shadow) says 5");
	check(status_words(argv[1], &queued, &files) == 0 && queued == 5 && files == 1,
	      "sysfs status_words: 5 bytes queued, 1 open file");
	check(read(fd, buf, sizeof(buf)) == 5 && !memcmp(buf, "hello", 5), "read them back");
	check(ioctl(fd, KSHIM_TEST_IOC_REVERSE, &rev) == 6 && !strcmp(data, "fedcba"),
	      "KSHIM_TEST_IOC_REVERSE (pointer-holding) reverses the buffer in place");
	check(ioctl(fd, KSHIM_TEST_IOC_CALLER, &seen) == 0 && seen == (compat ? compat_ops : 0),
	      compat ? "DEVEMU_SQE_F_COMPAT on open, write, read and ioctl" : "no DEVEMU_SQE_F_COMPAT on any request");
	if (seen != (compat ? compat_ops : 0))
		printf("  compat seen on opcodes %#x, expected %#x\n", seen, compat ? compat_ops : 0);
	close(fd);
	return failures ? 1 : 0;
}
