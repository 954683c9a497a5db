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
/*
 * kshim_hostile's per-file FIFO modes (ffifo*): records of KSHIM_TEST_RECORD bytes, "fF rNNNNNN" padded with
 * '.' and ended by '\n' (F the fh, N the file's record count so far).
 * PUSH: arg (fh << 16) | n: n records into fh's FIFO (the result: how many fit); fh 0xffff: the caller's.
 * TAKE: the core takes back the caller's file's FIFO (discard = its tail); the result: the bytes taken.
 * DIVERT: arg 0 or 1: divert the caller's file's FIFO to READ requests, or not.
 */
#define KSHIM_TEST_RECORD 24U
#define KSHIM_TEST_IOC_PUSH _IO(0xDE, 0x62)
#define KSHIM_TEST_IOC_TAKE _IO(0xDE, 0x63)
#define KSHIM_TEST_IOC_DIVERT _IO(0xDE, 0x64)
/* The status words kshim_echo publishes in the device-wide shadow. */
#define KSHIM_TEST_WORD_QUEUED 0 /* bytes in the FIFO */
#define KSHIM_TEST_WORD_FILES 1 /* open files */

#endif /* KSHIM_TEST_H */
