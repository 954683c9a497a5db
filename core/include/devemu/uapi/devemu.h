/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR MIT) */
/*
 * devemu device window: the one ABI between a driver (devemud's in-process
 * WindowDriver, under its CUSE and FUSE transports, or the devemu_kshim kernel
 * module) and the device core.
 *
 * The window is one shared-memory region (a memfd, or a kshim channel mmap).
 * Everything in it is addressed by offsets from its start, never by pointers,
 * so a restarted daemon can map it again and the kernel never follows a value
 * it finds there. Layout:
 *
 *   offset                  size            what
 *   0                       4 KiB           struct devemu_regs (control registers)
 *   DEVEMU_SHADOW_OFFSET    4 KiB           struct devemu_shadow (device-wide shadow)
 *   DEVEMU_FILES_OFFSET     16 KiB          struct devemu_shadow_file[DEVEMU_MAX_FILES]
 *   regs.sq_offset          192 + 128*depth submission ring: struct devemu_ring, 2*depth entries
 *   regs.cq_offset          192 + 16*depth  completion ring: struct devemu_ring, depth entries
 *   regs.data_offset        slot_size*depth data slots; slot N belongs to tag N
 *   regs.fifo_offset        4 KiB + rx + tx stream FIFOs (DEVEMU_F_STREAM only): two struct
 *                                           devemu_fifo, then rx_fifo_size and tx_fifo_size bytes
 *   regs.file_fifo_offset   256*n (paged)   per-file receive FIFOs (DEVEMU_F_FILE_STREAM only):
 *                           + n*size        n = file_fifo_count struct devemu_fifo, then n rings
 *                                           of file_fifo_size bytes, ring N belongs to fh N
 *
 * Roles: the *driver* produces submission entries (SQEs) and consumes
 * completion entries (CQEs); the *core* does the opposite. A tag names one
 * request in flight and owns data slot [tag]; the driver allocates tags and
 * reuses a tag only after it has consumed that tag's CQE. Every request gets
 * exactly one CQE. The submission ring has room for every tag's request plus
 * one CANCEL per tag, so a driver that sends at most one CANCEL per request
 * never finds it full. Index fields (head/tail) are free-running __u32
 * counters; an entry lives at index modulo the ring's entry count.
 *
 * Doorbell suppression: the core sets DEVEMU_RING_NEED_KICK in the SQ flags
 * before it sleeps and re-checks the ring; the driver rings the doorbell only
 * when the flag is set (io_uring SQ_NEED_WAKEUP semantics).
 *
 * ioctl arguments: a driver that cannot tell what an ioctl argument points to
 * submits DEVEMU_OP_IOCTL with the bytes it has (none on the first round of an
 * unrestricted call). The core answers either with the ioctl's result (and
 * cqe.aux output bytes in the data slot, to be copied to the caller's memory
 * ranges in order), or with DEVEMU_CQE_F_IOCTL_RETRY and a struct
 * devemu_ioctl_retry in the data slot: the driver then fetches the listed
 * input ranges of the caller's memory, concatenated, into the data slot and
 * submits the ioctl again with len = their total and out_len = the total of
 * the output ranges (FUSE_IOCTL_RETRY semantics, on every driver).
 *
 * 32-bit callers: a driver sets DEVEMU_SQE_F_COMPAT on every request it
 * submits for a compat (32-bit) task, as far as its transport tells it: the
 * kshim module on OPEN, READ, WRITE, IOCTL and POLL; CUSE on IOCTL
 * (FUSE_IOCTL_COMPAT; FUSE says nothing for the other operations). A model
 * whose structures differ between 32 and 64 bits (pointers, longs, struct
 * timeval) uses the 32-bit layout for such a request, or refuses it with a
 * clear errno.
 *
 * The caller's privilege: a driver that offers DEVEMU_F_CALLER_CAPS (the kshim
 * module) sets DEVEMU_SQE_F_CAPS and sqe.caps on every request, so that a
 * model checks what the kernel checks of the caller of that request
 * (capable(CAP_SYS_TIME) for RTC_SET_TIME), not of the file's opener. Without
 * it (CUSE, FUSE) the core asks /proc about sqe.pid instead.
 *
 * Reserved: every field, flag and bit this header names "reserved" is 0. The
 * side that writes it leaves it 0 (the window is created zeroed); the core
 * answers a request whose reserved fields or flags are not 0 with -EINVAL
 * (and drops such a CANCEL).
 */
#ifndef _UAPI_LINUX_DEVEMU_H
#define _UAPI_LINUX_DEVEMU_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define DEVEMU_MAGIC 0x554d4544U /* "DEMU" in little-endian memory */
#define DEVEMU_ABI_VERSION 1U

#define DEVEMU_WINDOW_PAGE 4096U
#define DEVEMU_SHADOW_OFFSET 4096U
#define DEVEMU_FILES_OFFSET 8192U
#define DEVEMU_MAX_FILES 1024U
#define DEVEMU_RINGS_OFFSET (DEVEMU_FILES_OFFSET + DEVEMU_MAX_FILES * 16U)
#define DEVEMU_MAX_QUEUE_DEPTH 256U
#define DEVEMU_MAX_SLOT_SIZE (1U << 20)
#define DEVEMU_DEVICE_NAME_MAX 64U
#define DEVEMU_DEFAULT_QUEUE_DEPTH 64U
#define DEVEMU_DEFAULT_SLOT_SIZE (128U * 1024U)

/* regs.status bits; the others are reserved */
#define DEVEMU_STATUS_ACKNOWLEDGE (1U << 0) /* core: has seen the window */
#define DEVEMU_STATUS_DRIVER_OK (1U << 2) /* core: serves requests */
#define DEVEMU_STATUS_NOSRV (1U << 8) /* driver: detached, nothing is served here any more */

/* feature bits: offered by the driver, accepted by the core */
#define DEVEMU_F_SHADOW_POLL (1ULL << 0) /* driver answers poll/FIONREAD from shadow */
#define DEVEMU_F_IOCTL_RETRY (1ULL << 1) /* driver can run ioctl retry rounds */
#define DEVEMU_F_CANCEL (1ULL << 2) /* driver sends CANCEL for interrupted callers */
#define DEVEMU_F_NEED_KICK (1ULL << 3) /* doorbell suppression */
#define DEVEMU_F_STREAM (1ULL << 4) /* device-wide stream FIFOs: read/write served by the driver */
#define DEVEMU_F_CALLER_CAPS (1ULL << 5) /* every request reports its caller's capabilities (sqe.caps) */
#define DEVEMU_F_FILE_STREAM (1ULL << 6) /* per-file receive FIFOs: each open file's read() served by the driver */

/* regs.isr bits: why the core raised the interrupt; the others are reserved */
#define DEVEMU_ISR_CQ (1U << 0) /* completions posted */
#define DEVEMU_ISR_SHADOW (1U << 1) /* shadow registers changed */
#define DEVEMU_ISR_STREAM (1U << 2) /* the core moved stream FIFO indices */

/* Page 0: control registers. RO = written by the window's creator only. */
struct devemu_regs {
	__u32 magic; /* 0x00 RO DEVEMU_MAGIC */
	__u32 abi_version; /* 0x04 RO DEVEMU_ABI_VERSION */
	__u32 device_id; /* 0x08 RO window instance number */
	__u32 queue_depth; /* 0x0c RO entries per ring == data slots, power of 2 */
	__u32 slot_size; /* 0x10 RO bytes per data slot */
	__u32 max_files; /* 0x14 RO entries in the file shadow table */
	__u64 window_size; /* 0x18 RO bytes in the mapping */
	__u64 sq_offset; /* 0x20 RO */
	__u64 cq_offset; /* 0x28 RO */
	__u64 data_offset; /* 0x30 RO */
	__u64 features_offered; /* 0x38 driver writes */
	__u64 features_accepted; /* 0x40 core writes */
	__u32 status; /* 0x48 both, DEVEMU_STATUS_* */
	__u32 attach_epoch; /* 0x4c driver bumps on every (re)attach */
	__u32 reserved0; /* 0x50 */
	__u32 isr; /* 0x54 core sets bits, driver clears (write 1 to clear) */
	__u64 reserved1; /* 0x58 */
	char name[DEVEMU_DEVICE_NAME_MAX]; /* 0x60 RO NUL-terminated device name */
	__u32 rx_fifo_size; /* 0xa0 RO receive FIFO bytes (0: none), power of 2 */
	__u32 tx_fifo_size; /* 0xa4 RO transmit FIFO bytes (0: none), power of 2 */
	__u64 fifo_offset; /* 0xa8 RO the FIFO control page (0 when both sizes are 0) */
	__u32 file_fifo_count; /* 0xb0 RO files (fh < count) with their own receive FIFO (0: none) */
	__u32 file_fifo_size; /* 0xb4 RO bytes in each per-file receive FIFO, power of 2 */
	__u64 file_fifo_offset; /* 0xb8 RO the per-file FIFO control blocks (0 when count is 0) */
	__u8 reserved[DEVEMU_WINDOW_PAGE - 0xc0];
};

/*
 * Device-wide shadow registers, written by the core under a seqlock: odd seq
 * means an update is in progress; readers retry until seq is even and equal
 * before and after their read. What is per open file (poll readiness, bytes
 * readable) is in struct devemu_shadow_file; here are the words a model
 * publishes about the whole device (the kshim module shows them in sysfs).
 */
#define DEVEMU_STATUS_WORDS 12U
struct devemu_shadow {
	__u32 seq;
	__u32 reserved0[3];
	__u32 status[DEVEMU_STATUS_WORDS]; /* model-declared status words */
	__u8 reserved[DEVEMU_WINDOW_PAGE - 64];
};

/*
 * Per-open-file shadow, indexed by file handle (fh < max_files). The core
 * rewrites it (and so bumps seq) when a value changes or data arrives; a
 * driver wakes a file's pollers when its seq moved.
 */
struct devemu_shadow_file {
	__u32 seq; /* seqlock, as above */
	__u32 revents; /* POLLIN/POLLOUT/... for this open file */
	__u32 readable; /* bytes a read would return now (FIONREAD) */
	__u32 writable; /* bytes a write would accept now */
};

/* Ring control block; entries follow at +192. head/tail on their own lines. */
#define DEVEMU_RING_NEED_KICK (1U << 0)
struct devemu_ring {
	__u32 head; /* consumer index */
	__u8 pad0[60];
	__u32 tail; /* producer index */
	__u8 pad1[60];
	__u32 flags; /* DEVEMU_RING_* (SQ: set by the core) */
	__u8 pad2[60];
};
#define DEVEMU_RING_ENTRIES_OFFSET 192U

/*
 * Stream FIFOs (DEVEMU_F_STREAM): byte rings that let the driver serve read()
 * and write() without a request. The receive FIFO (rx) carries the device's
 * output: the core produces (tail), the driver consumes (head) into callers'
 * read() buffers. The transmit FIFO (tx) carries callers' write() bytes: the
 * driver produces, the core consumes. Both are device-wide: every open file
 * of the window reads from the same rx and writes into the same tx, in order,
 * as with a pipe. head and tail are free-running __u32 byte counters; a byte
 * lives at index & (size - 1); fill = tail - head is never above the size.
 *
 * The consumer side of each FIFO is the only writer of head, the producer
 * the only writer of tail; data is published by a store-release of tail and
 * given back by a store-release of head. Every other field is written by the
 * core and read by the driver, which trusts none of it: it checks that
 * fill <= size on each access, clamps watermark and record to the size, and
 * never uses an index or length from the window as more than a count within
 * its own copy of the geometry.
 *
 * Notifications, both ways suppressed unless asked for:
 * - driver -> core (the doorbell eventfd): the core writes 1 to kick before it
 *   sleeps and re-checks the fill; the driver, after moving an index, reads
 *   kick (after a full fence) and rings the doorbell if it atomically took
 *   the 1 and the watermark condition holds: rx fill <= rx.watermark (refill
 *   me), tx fill >= tx.watermark (drain me). A caller about to block on an
 *   empty rx or a full tx always meets the condition.
 * - core -> driver: after a batch that moved either FIFO's core index the
 *   core sets DEVEMU_ISR_STREAM and raises the interrupt once; the driver
 *   wakes the callers blocked on the FIFOs and the window's pollers.
 *
 * Records: record (1 when 0) is the unit a model streams in (24 for evdev's
 * struct input_event): the driver moves whole multiples of it, a read or
 * write of a count below it fails with -EINVAL, and a write's count is
 * rounded down to it. A write of at most tx size bytes is atomic: it goes in
 * whole or waits (O_NONBLOCK: -EAGAIN), as a pipe's PIPE_BUF writes do.
 *
 * Loops (rx.capacity != 0, written by the window's creator): the two FIFOs
 * and the model between them are one bounded byte stream, as a pipe is: what
 * is written is read back, in order, and at most capacity bytes are in
 * flight (tx fill + what the model holds + rx fill). The core publishes
 * rx.adjust = held + its rx tail - its tx head (free-running), which moving
 * bytes from tx through the model to rx leaves unchanged; it changes only
 * when bytes enter or leave the stream elsewhere (injected, cleared). The
 * driver's bytes in flight are then its own tx tail - its own rx head +
 * adjust, clamped to [0, capacity]: FIONREAD and POLLIN come from them, a
 * write of at most capacity bytes waits for room for all of it, and a read
 * waits (even O_NONBLOCK) for bytes in flight to reach rx, so a read right
 * after a write sees the write as with a pipe. tx size >= capacity. A loop
 * is cleared (devemuctl inject NAME clear) by the core storing its rx tail in
 * rx.discard: the driver treats each new value as a head it moves to, when
 * that is ahead of its own and not past the tail, dropping the bytes between.
 *
 * Diverted: while the core sets divert on a FIFO (it does while a fault is
 * injected on that operation, and while the model's state asks for the
 * request path: a tty in canonical mode, a hung-up file), the driver sends
 * the calls that begin from then on as READ/WRITE requests, as without the
 * FIFO, and callers blocked on the FIFO go on as requests too (the core
 * raises DEVEMU_ISR_STREAM when divert changes). The core answers them from
 * the same stream: a diverted read takes the bytes in rx first (handing them
 * back with rx.discard) and the driver holds its rx lock meanwhile, so no
 * FIFO read moves the head under it; a diverted write goes in after what tx
 * holds. While diverted, the shadow's readiness counts as well as the
 * fill's: POLLIN/POLLOUT from either, FIONREAD = rx fill + the shadow's
 * readable (a loop: its bytes in flight). The driver counts the calls it
 * served from each FIFO (calls) and the callers blocked on it (waiters) for
 * the core's statistics; the core trusts them with nothing but those numbers.
 *
 * rx.discard, outside loops too: a flush (tcflush) or a diverted read's
 * taking is the core storing a new rx.discard; the driver moves its head to
 * it as described under Loops.
 *
 * On detach (the daemon exits or dies), the bytes still in both FIFOs are
 * dropped with the window: the files of that epoch fail with -EIO from then
 * on, as for every request.
 *
 * Per-file receive FIFOs (DEVEMU_F_FILE_STREAM): for a model whose every
 * open file has its own queue (evdev's clients), the window holds
 * file_fifo_count receive FIFOs of file_fifo_size bytes, FIFO N for the file
 * whose OPEN returned fh N (files with fh >= count have none and read by
 * request). Each is an rx FIFO as above, on its own: the core produces what
 * that file may read (tail), the driver serves that file's read() from it
 * (head): whole records, an empty FIFO blocks (O_NONBLOCK: -EAGAIN), a signal
 * gives -EINTR; kick, watermark, record, discard, divert, calls and waiters
 * mean what they mean for rx; capacity, adjust and nowait are unused (0).
 * Such a file never reads from the device-wide rx FIFO. Its readiness: POLLIN
 * and FIONREAD from its FIFO's fill, the rest (and, while diverted, POLLIN
 * too) from the file's shadow, as for a diverted rx.
 * - Records are in the native (64-bit) layout: a compat (32-bit) caller's
 *   read goes as a READ request, and its FIONREAD counts the FIFO's records
 *   at compat_record bytes each (evdev: 16 for 24).
 * - The core takes back: while a READ or IOCTL request of a file with a FIFO
 *   is in flight, the driver holds that FIFO's lock (no read moves its head),
 *   so the core may take the bytes the FIFO holds back into the model (a
 *   request sees the file's whole queue: an ioctl that flushes it, a compat
 *   read) and hand them back with discard; the driver acts on discard before
 *   it lets the lock go.
 * - The core drops the bytes of a file that was released before it answers
 *   an OPEN that reuses its fh (discard = its tail), so a new file starts
 *   empty.
 */
struct devemu_fifo {
	__u32 head; /* consumer index */
	__u8 pad0[60];
	__u32 tail; /* producer index */
	__u8 pad1[60];
	__u32 kick; /* core writes 1: ring the doorbell at the watermark; driver takes it (xchg 0) */
	__u32 watermark; /* core: rx: kick when fill <= it; tx: kick when fill >= it */
	__u32 record; /* core: the model's record size in bytes, 0 or 1: bytes */
	__u32 capacity; /* rx, RO (window creator): a loop's bound on bytes in flight; 0: not a loop */
	__u32 adjust; /* rx, core: a loop's held + rx tail - tx head (see Loops) */
	__u32 discard; /* rx, core: a new value drops the bytes before that index (a clear, a flush) */
	__u32 divert; /* core: non-zero: send this direction's calls as READ/WRITE requests (see Diverted) */
	__u32 calls; /* driver: read()/write() calls served from this FIFO, free-running (statistics) */
	__u32 waiters; /* driver: callers blocked on this FIFO now */
	__u32 nowait; /* rx, core: non-zero: a read of an empty rx returns 0 at once (a tty's VMIN 0, VTIME 0) */
	__u32 compat_record; /* per-file rx, core: a record's size for a 32-bit caller (0: record), for its FIONREAD */
	__u8 pad2[20];
};
#define DEVEMU_FIFO_CTRL_SIZE 256U /* rx control block at fifo_offset, tx at + this */
#define DEVEMU_MIN_FIFO_SIZE 4096U
#define DEVEMU_MAX_FIFO_SIZE (4U << 20)
#define DEVEMU_MAX_FILE_FIFOS 256U /* file_fifo_count at most */
#define DEVEMU_MAX_FILE_FIFO_SIZE (64U << 10) /* file_fifo_size at most */

/*
 * The opcodes, one list that every side expands: this enum, the core's
 * per-operation statistics and the module's sysfs counters. X(NAME, value,
 * "name"): values are dense from 1, so value - 1 indexes a per-opcode array;
 * the name is how tools and sysfs print the opcode.
 *
 *   OPEN     result: fh (>= 0) or -errno
 *   RELEASE  result: 0
 *   READ     len: bytes wanted; result: bytes in the slot
 *   WRITE    len: bytes in the slot; result: bytes accepted
 *   IOCTL    see the header comment
 *   POLL     out_len: events; cqe.aux: revents
 *   CANCEL   tag: the parked request to end with -EINTR (no completion of its own)
 */
#define DEVEMU_OPCODES(X)        \
	X(OPEN, 1, "open")       \
	X(RELEASE, 2, "release") \
	X(READ, 3, "read")       \
	X(WRITE, 4, "write")     \
	X(IOCTL, 5, "ioctl")     \
	X(POLL, 6, "poll")       \
	X(CANCEL, 7, "cancel")

#define __DEVEMU_OP_ENUM(op, value, name) DEVEMU_OP_##op = value,
enum devemu_opcode { DEVEMU_OPCODES(__DEVEMU_OP_ENUM) __DEVEMU_OP_END };
#undef __DEVEMU_OP_ENUM
#define DEVEMU_OP_COUNT (__DEVEMU_OP_END - 1)

/* sqe.flags; bit 1 and bits 4-15 are reserved */
#define DEVEMU_SQE_F_NONBLOCK (1U << 0) /* O_NONBLOCK: never park, -EAGAIN */
#define DEVEMU_SQE_F_IOCTL_RESTRICTED (1U << 2) /* driver cannot retry: data is _IOC_SIZE at arg */
#define DEVEMU_SQE_F_COMPAT (1U << 3) /* the caller is a 32-bit (compat) task: its structures use the 32-bit layout */
#define DEVEMU_SQE_F_CAPS (1U << 4) /* sqe.caps holds the caller's capabilities (DEVEMU_F_CALLER_CAPS) */
#define DEVEMU_SQE_F_ALL \
	(DEVEMU_SQE_F_NONBLOCK | DEVEMU_SQE_F_IOCTL_RESTRICTED | DEVEMU_SQE_F_COMPAT | DEVEMU_SQE_F_CAPS)

/* 64-byte submission entry */
struct devemu_sqe {
	__u8 opcode; /* 0x00 enum devemu_opcode */
	__u8 rsvd0; /* 0x01 reserved */
	__u16 flags; /* 0x02 DEVEMU_SQE_F_* */
	__u32 tag; /* 0x04 < queue_depth; owns data slot [tag] */
	__u32 epoch; /* 0x08 attach epoch the driver runs in */
	__u32 fh; /* 0x0c file handle from OPEN's result */
	__u32 len; /* 0x10 READ: wanted; WRITE/IOCTL: input bytes in slot */
	__u32 out_len; /* 0x14 IOCTL: output room; POLL: events */
	__u32 ioctl_cmd; /* 0x18 */
	__u32 open_flags; /* 0x1c O_* flags of the file */
	__u64 ioctl_arg; /* 0x20 raw argument; an address is never followed */
	__u32 pid; /* 0x28 caller */
	__u32 uid; /* 0x2c */
	__u32 gid; /* 0x30 */
	__u32 rsvd1; /* 0x34 reserved */
	/*
	 * 0x38 DEVEMU_SQE_F_CAPS: bit N set if the caller has capability N in the
	 * initial user namespace (its effective set there, as capable(N) sees it
	 * before any LSM); 0 without the flag.
	 */
	__u64 caps;
};

/* cqe.flags */
#define DEVEMU_CQE_F_IOCTL_RETRY (1U << 0) /* slot holds struct devemu_ioctl_retry */

/* 16-byte completion entry */
struct devemu_cqe {
	__u32 tag; /* 0x00 */
	__s32 result; /* 0x04 >= 0 success, < 0 -errno */
	__u32 aux; /* 0x08 POLL: revents; IOCTL: output bytes in slot */
	__u16 epoch; /* 0x0c low 16 bits of the request's epoch */
	__u16 flags; /* 0x0e DEVEMU_CQE_F_* */
};

/*
 * The window layout, one formula for every side (the core, the module and the
 * test stand-ins), from the queue depth (a power of 2) and the slot size:
 * the submission ring (2 * depth entries) starts at DEVEMU_RINGS_OFFSET, the
 * completion ring (depth entries) and the data slots each start on the next
 * page after the part before them.
 */
static inline __u64 devemu_page_align(__u64 v)
{
	return (v + DEVEMU_WINDOW_PAGE - 1) & ~(__u64)(DEVEMU_WINDOW_PAGE - 1);
}
static inline __u64 devemu_window_sq_offset(void)
{
	return DEVEMU_RINGS_OFFSET;
}
static inline __u64 devemu_window_cq_offset(__u32 depth)
{
	return devemu_page_align(devemu_window_sq_offset() + DEVEMU_RING_ENTRIES_OFFSET +
				 2ULL * depth * sizeof(struct devemu_sqe));
}
static inline __u64 devemu_window_data_offset(__u32 depth)
{
	return devemu_page_align(devemu_window_cq_offset(depth) + DEVEMU_RING_ENTRIES_OFFSET +
				 (__u64)depth * sizeof(struct devemu_cqe));
}
static inline __u64 devemu_window_size(__u32 depth, __u32 slot_size)
{
	return devemu_window_data_offset(depth) + (__u64)depth * slot_size;
}
/* The stream FIFOs follow the data slots: a control page, rx data, tx data. */
static inline __u64 devemu_window_fifo_offset(__u32 depth, __u32 slot_size)
{
	return devemu_page_align(devemu_window_size(depth, slot_size));
}
static inline __u64 devemu_window_stream_size(__u32 depth, __u32 slot_size, __u32 rx_size, __u32 tx_size)
{
	if (!rx_size && !tx_size)
		return devemu_window_size(depth, slot_size);
	return devemu_window_fifo_offset(depth, slot_size) + DEVEMU_WINDOW_PAGE + rx_size + tx_size;
}
/* The per-file receive FIFOs follow: count control blocks (rounded up to a page), then count rings. */
static inline __u64 devemu_window_file_fifo_offset(__u32 depth, __u32 slot_size, __u32 rx_size, __u32 tx_size)
{
	return devemu_page_align(devemu_window_stream_size(depth, slot_size, rx_size, tx_size));
}
static inline __u64 devemu_window_file_fifo_data(__u32 count)
{
	return devemu_page_align((__u64)count * DEVEMU_FIFO_CTRL_SIZE);
}
static inline __u64 devemu_window_total_size(__u32 depth, __u32 slot_size, __u32 rx_size, __u32 tx_size,
					     __u32 file_count, __u32 file_size)
{
	if (!file_count)
		return devemu_window_stream_size(depth, slot_size, rx_size, tx_size);
	return devemu_window_file_fifo_offset(depth, slot_size, rx_size, tx_size) +
	       devemu_window_file_fifo_data(file_count) + (__u64)file_count * file_size;
}

#define DEVEMU_IOCTL_MAX_IOV 256U
struct devemu_iovec {
	__u64 base; /* caller address */
	__u64 len;
};
/*
 * In the data slot of an IOCTL_RETRY completion: in_count input ranges, then
 * out_count output ranges.
 */
struct devemu_ioctl_retry {
	__u32 in_count;
	__u32 out_count;
	struct devemu_iovec iov[];
};

/*
 * ioctls that devemu devices answer on every node (size-encoded, so they pass
 * through every driver, the FUSE fallback included). 0xDE is devemu's type.
 */
struct devemu_counters {
	__u64 bytes_in; /* accepted by write() */
	__u64 bytes_out; /* returned by read() */
	__u64 opens; /* successful opens since the device was created */
	__u64 dropped; /* bytes the model discarded (loopback when_full=drop) */
};
#define DEVEMU_IOC_COUNTERS _IOR(0xDE, 0x01, struct devemu_counters)
/* Bytes readable now: FIONREAD for drivers that cannot carry FIONREAD. */
#define DEVEMU_IOC_NREAD _IOR(0xDE, 0x02, __u32)

/*
 * The kernel shim (devemu_kshim.ko). Its control node /dev/devemu-kshim (root
 * only) creates devices; each device is a client node /dev/NAME served by the
 * module, and a *channel* fd through which one daemon serves it: the daemon
 * mmaps the window (offset 0, regs.window_size bytes) from the channel fd,
 * the module signals doorbell_fd (an eventfd) when it publishes submissions
 * and the ring's NEED_KICK flag is set, and the daemon raises the interrupt
 * by writing irq_fd (an eventfd the module watches, KVM irqfd style). Closing
 * the channel (daemon exit or death) detaches: the device enters NOSRV, its
 * waiting callers get -EIO, new opens -ENODEV, the node stays. ATTACH gives a
 * new daemon a fresh window in a new epoch; files opened before it get -EIO.
 */
#define DEVEMU_KSHIM_CONTROL_NAME "devemu-kshim"

/* Feature bits the module offers in regs.features_offered. */
#define DEVEMU_KSHIM_FEATURES \
	(DEVEMU_F_SHADOW_POLL | DEVEMU_F_IOCTL_RETRY | DEVEMU_F_CANCEL | DEVEMU_F_NEED_KICK | DEVEMU_F_STREAM | \
	 DEVEMU_F_CALLER_CAPS | DEVEMU_F_FILE_STREAM)

struct devemu_kshim_add {
	char name[DEVEMU_DEVICE_NAME_MAX]; /* /dev/NAME: [A-Za-z0-9_.-], NUL-terminated */
	__u32 mode; /* node permission bits (ADD only) */
	__u32 uid; /* node owner (ADD only) */
	__u32 gid; /* node group (ADD only) */
	__u32 queue_depth; /* power of 2, <= DEVEMU_MAX_QUEUE_DEPTH; 0 means DEVEMU_DEFAULT_QUEUE_DEPTH */
	__u32 slot_size; /* page multiple, <= DEVEMU_MAX_SLOT_SIZE; 0 means DEVEMU_DEFAULT_SLOT_SIZE */
	__s32 doorbell_fd; /* eventfd the module signals */
	__s32 irq_fd; /* eventfd the daemon writes */
	__u32 flags; /* DEVEMU_KSHIM_ADD_* */
	__u64 features; /* features the daemon accepts of DEVEMU_KSHIM_FEATURES */
	/*
	 * Stream FIFO sizes (DEVEMU_F_STREAM accepted): 0, or a power of 2
	 * from DEVEMU_MIN_FIFO_SIZE to DEVEMU_MAX_FIFO_SIZE. A FIFO of size 0
	 * leaves its direction on the request path.
	 */
	__u32 rx_fifo_size;
	__u32 tx_fifo_size;
	/*
	 * Non-zero: the two FIFOs are a loop (see Loops above) of this many
	 * bytes; needs both sizes, and at most tx_fifo_size.
	 */
	__u32 stream_capacity;
	/*
	 * Per-file receive FIFOs (DEVEMU_F_FILE_STREAM accepted): count 0, or
	 * 1 to DEVEMU_MAX_FILE_FIFOS files with fh < count, each with a FIFO of
	 * file_fifo_size bytes, a power of 2 from DEVEMU_MIN_FIFO_SIZE to
	 * DEVEMU_MAX_FILE_FIFO_SIZE.
	 */
	__u32 file_fifo_count;
	__u32 file_fifo_size;
	__u32 reserved[3]; /* must be 0 */
};

/*
 * flags: a user device. Without CAP_SYS_ADMIN only user devices can be added,
 * re-attached and removed, by whoever may open the control node for writing
 * (a udev rule gives it to a group): the device is the caller's (its euid),
 * its node /dev/devemu-user/UID/NAME (the names of different users never
 * collide, and no user places a node where a system path is expected), uid
 * the caller's, gid one of the caller's groups, no permission bits for others,
 * a window of at most DEVEMU_KSHIM_USER_WINDOW_MAX bytes of slots, and at most
 * the module parameter max_user_devices of them per user (-EDQUOT). ATTACH
 * with the flag and REMOVE by a user reach that user's own devices only; an
 * administrator removes one by its sysfs name, uUID:NAME.
 */
#define DEVEMU_KSHIM_ADD_USER (1U << 0)
#define DEVEMU_KSHIM_USER_WINDOW_MAX (16U << 20)
#define DEVEMU_KSHIM_USER_DIR "devemu-user"

/* Creates /dev/NAME and returns a channel fd (O_CLOEXEC). -EEXIST if NAME exists. */
#define DEVEMU_KSHIM_IOC_ADD _IOW(0xDE, 0x40, struct devemu_kshim_add)
/* Serves the existing device NAME again (after a daemon died); returns a channel fd. -EBUSY if served. */
#define DEVEMU_KSHIM_IOC_ATTACH _IOW(0xDE, 0x41, struct devemu_kshim_add)
/* Removes /dev/NAME (argument: the name, NUL-terminated, DEVEMU_DEVICE_NAME_MAX bytes). */
#define DEVEMU_KSHIM_IOC_REMOVE _IOW(0xDE, 0x42, char[DEVEMU_DEVICE_NAME_MAX])

#endif /* _UAPI_LINUX_DEVEMU_H */
