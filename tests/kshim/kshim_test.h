/* SPDX-License-Identifier: MIT */
/* Test-only ioctls of the kshim self-test servers (shared with selftest.py, which spells them out). */
#ifndef KSHIM_TEST_H
#define KSHIM_TEST_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Reverses len bytes at ptr in place: the server fetches the struct, then the buffer, and writes it back. */
struct kshim_test_rev {
	__u64 ptr;
	__u32 len;
	__u32 pad;
};
#define KSHIM_TEST_REV_MAX 4096U
#define KSHIM_TEST_IOC_REVERSE _IOWR(0xDE, 0x60, struct kshim_test_rev)

#endif /* KSHIM_TEST_H */
