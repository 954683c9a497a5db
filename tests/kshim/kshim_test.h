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
/*
 * Which of the file's requests came from a 32-bit caller: bit N is set when the
 * latest request with opcode N carried DEVEMU_SQE_F_COMPAT (this one included).
 */
#define KSHIM_TEST_IOC_CALLER _IOR(0xDE, 0x61, __u32)
/* The status words kshim_echo publishes in the device-wide shadow. */
#define KSHIM_TEST_WORD_QUEUED 0 /* bytes in the FIFO */
#define KSHIM_TEST_WORD_FILES 1 /* open files */

#endif /* KSHIM_TEST_H */
