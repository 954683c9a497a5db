/* SPDX-License-Identifier: MIT */
/*
 * The daemon side of a devemu_kshim channel, for the module's self-tests:
 * ADD/ATTACH a device, map and check the window, consume submissions, post
 * completions, raise the interrupt. Header-only; used by kshim_echo.c and
 * kshim_hostile.c.
 */
#ifndef KSHIM_SERVER_H
#define KSHIM_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devemu/uapi/devemu.h"

struct ks {
	int ctl, chan, doorbell, irq;
	uint8_t *win;
	size_t size;
	struct devemu_regs *regs;
	struct devemu_ring *sq, *cq;
	struct devemu_sqe *sqes;
	struct devemu_cqe *cqes;
	struct devemu_shadow_file *files;
	uint8_t *data;
	struct devemu_fifo *rx, *tx; /* NULL without stream FIFOs */
	uint8_t *rx_data, *tx_data;
	uint32_t rx_size, tx_size;
	uint8_t *file_fifo; /* the per-file FIFOs' control blocks (NULL: none) */
	uint32_t file_count, file_size;
	uint32_t depth, slot, epoch;
	uint32_t sq_head, cq_tail;
	uint32_t isr; /* bits to raise with the next interrupt */
};

static inline uint32_t ks_load(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void ks_store(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/*
 * ADD (or ATTACH) NAME with stream FIFOs of rx and tx bytes (0: none) and fcount per-file FIFOs of fsize bytes,
 * and map its window. Returns 0 or -errno.
 */
static inline int ks_connect_files(struct ks *k, const char *name, int attach, uint32_t depth, uint32_t slot,
				   uint64_t features, uint32_t mode, uint32_t rx, uint32_t tx, uint32_t loop,
				   uint32_t fcount, uint32_t fsize)
{
	struct devemu_kshim_add a;
	struct devemu_regs regs;
	uint64_t cq, data, size;
	void *p;

	memset(k, 0, sizeof(*k));
	memset(&a, 0, sizeof(a));
	snprintf(a.name, sizeof(a.name), "%s", name);
	a.mode = mode;
	a.queue_depth = depth;
	a.slot_size = slot;
	a.features = features;
	a.rx_fifo_size = rx;
	a.tx_fifo_size = tx;
	a.stream_capacity = loop;
	a.file_fifo_count = fcount;
	a.file_fifo_size = fsize;
	k->doorbell = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	k->irq = eventfd(0, EFD_CLOEXEC);
	a.doorbell_fd = k->doorbell;
	a.irq_fd = k->irq;
	k->ctl = open("/dev/" DEVEMU_KSHIM_CONTROL_NAME, O_RDWR | O_CLOEXEC);
	if (k->ctl < 0)
		return -errno;
	k->chan = ioctl(k->ctl, attach ? DEVEMU_KSHIM_IOC_ATTACH : DEVEMU_KSHIM_IOC_ADD, &a);
	if (k->chan < 0)
		return -errno;
	if (fcntl(k->chan, F_GETFD) != FD_CLOEXEC) {
		fprintf(stderr, "channel fd is not close-on-exec\n");
		return -EPROTO;
	}

	p = mmap(NULL, sizeof(regs), PROT_READ, MAP_SHARED, k->chan, 0);
	if (p == MAP_FAILED)
		return -errno;
	memcpy(&regs, p, sizeof(regs));
	munmap(p, sizeof(regs));
	depth = regs.queue_depth;
	slot = regs.slot_size;
	cq = devemu_window_cq_offset(depth);
	data = devemu_window_data_offset(depth);
	size = devemu_window_total_size(depth, slot, regs.rx_fifo_size, regs.tx_fifo_size, regs.file_fifo_count,
					regs.file_fifo_size);
	if (regs.magic != DEVEMU_MAGIC || regs.abi_version != DEVEMU_ABI_VERSION || !depth || (depth & (depth - 1)) ||
	    depth > DEVEMU_MAX_QUEUE_DEPTH || regs.sq_offset != devemu_window_sq_offset() || regs.cq_offset != cq ||
	    regs.data_offset != data || regs.window_size != size || regs.rx_fifo_size != rx || regs.tx_fifo_size != tx || regs.max_files != DEVEMU_MAX_FILES ||
	    regs.file_fifo_count != fcount || regs.file_fifo_size != fsize ||
	    regs.file_fifo_offset != (fcount ? devemu_window_file_fifo_offset(depth, slot, rx, tx) : 0) ||
	    regs.features_offered != DEVEMU_KSHIM_FEATURES || strncmp(regs.name, name, sizeof(regs.name)) ||
	    regs.status != 0) {
		fprintf(stderr, "window registers do not match the layout\n");
		return -EPROTO;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, k->chan, 0);
	if (p == MAP_FAILED)
		return -errno;
	k->win = p;
	k->size = size;
	k->regs = p;
	k->files = (struct devemu_shadow_file *)(k->win + DEVEMU_FILES_OFFSET);
	k->sq = (struct devemu_ring *)(k->win + regs.sq_offset);
	k->cq = (struct devemu_ring *)(k->win + regs.cq_offset);
	k->sqes = (struct devemu_sqe *)(k->win + regs.sq_offset + DEVEMU_RING_ENTRIES_OFFSET);
	k->cqes = (struct devemu_cqe *)(k->win + regs.cq_offset + DEVEMU_RING_ENTRIES_OFFSET);
	k->data = k->win + data;
	k->depth = depth;
	k->slot = slot;
	k->epoch = regs.attach_epoch;
	if (rx || tx) {
		k->rx = (struct devemu_fifo *)(k->win + regs.fifo_offset);
		k->tx = (struct devemu_fifo *)(k->win + regs.fifo_offset + DEVEMU_FIFO_CTRL_SIZE);
		k->rx_data = k->win + regs.fifo_offset + DEVEMU_WINDOW_PAGE;
		k->tx_data = k->rx_data + rx;
		k->rx_size = rx;
		k->tx_size = tx;
	}
	if (fcount) {
		k->file_fifo = k->win + regs.file_fifo_offset;
		k->file_count = fcount;
		k->file_size = fsize;
	}
	k->regs->features_accepted = features;
	__atomic_or_fetch(&k->regs->status, DEVEMU_STATUS_ACKNOWLEDGE | DEVEMU_STATUS_DRIVER_OK, __ATOMIC_SEQ_CST);
	return 0;
}

static inline int ks_connect_fifo(struct ks *k, const char *name, int attach, uint32_t depth, uint32_t slot,
				  uint64_t features, uint32_t mode, uint32_t rx, uint32_t tx, uint32_t loop)
{
	return ks_connect_files(k, name, attach, depth, slot, features, mode, rx, tx, loop, 0, 0);
}

/* The control block of fh's per-file FIFO, and its ring. */
static inline struct devemu_fifo *ks_file_ctl(struct ks *k, uint32_t fh)
{
	return (struct devemu_fifo *)(k->file_fifo + (uint64_t)fh * DEVEMU_FIFO_CTRL_SIZE);
}

static inline uint8_t *ks_file_data(struct ks *k, uint32_t fh)
{
	return k->file_fifo + devemu_window_file_fifo_data(k->file_count) + (uint64_t)fh * k->file_size;
}

static inline int ks_connect(struct ks *k, const char *name, int attach, uint32_t depth, uint32_t slot,
			     uint64_t features, uint32_t mode)
{
	return ks_connect_fifo(k, name, attach, depth, slot, features, mode, 0, 0, 0);
}

static inline uint8_t *ks_slot(struct ks *k, uint32_t tag)
{
	return k->data + (uint64_t)tag * k->slot;
}

/*
 * Takes the next submission, if any. When the ring is empty it sets NEED_KICK
 * and looks again (the driver rings only when the flag is set).
 */
static inline int ks_next(struct ks *k, struct devemu_sqe *sqe)
{
	uint32_t tail = ks_load(&k->sq->tail);

	if (tail == k->sq_head) {
		__atomic_or_fetch(&k->sq->flags, DEVEMU_RING_NEED_KICK, __ATOMIC_SEQ_CST);
		tail = ks_load(&k->sq->tail);
		if (tail == k->sq_head)
			return 0;
	}
	__atomic_and_fetch(&k->sq->flags, ~DEVEMU_RING_NEED_KICK, __ATOMIC_SEQ_CST);
	if (tail - k->sq_head > 2 * k->depth) {
		fprintf(stderr, "submission tail %u runs past head %u\n", tail, k->sq_head);
		k->sq_head = tail;
		ks_store(&k->sq->head, k->sq_head);
		return 0;
	}
	*sqe = k->sqes[k->sq_head & (2 * k->depth - 1)];
	k->sq_head++;
	ks_store(&k->sq->head, k->sq_head);
	return 1;
}

/* Posts a completion entry as given (no checks: the hostile server uses it too). */
static inline void ks_post(struct ks *k, uint32_t tag, uint32_t epoch, int32_t result, uint32_t aux, uint16_t flags)
{
	struct devemu_cqe *e = &k->cqes[k->cq_tail & (k->depth - 1)];

	e->tag = tag;
	e->result = result;
	e->aux = aux;
	e->epoch = (uint16_t)epoch;
	e->flags = flags;
	k->cq_tail++;
	ks_store(&k->cq->tail, k->cq_tail);
	k->isr |= DEVEMU_ISR_CQ;
}

static inline void ks_complete(struct ks *k, const struct devemu_sqe *sqe, int32_t result, uint32_t aux, uint16_t flags)
{
	ks_post(k, sqe->tag, sqe->epoch, result, aux, flags);
}

/* Raises the interrupt if anything is pending. */
static inline void ks_interrupt(struct ks *k)
{
	uint64_t one = 1;

	if (!k->isr)
		return;
	__atomic_or_fetch(&k->regs->isr, k->isr, __ATOMIC_SEQ_CST);
	k->isr = 0;
	if (write(k->irq, &one, sizeof(one)) != sizeof(one))
		perror("write irq eventfd");
}

/* Waits for the doorbell (or timeout_ms); returns poll's result. */
static inline int ks_wait(struct ks *k, int timeout_ms)
{
	struct pollfd p = { .fd = k->doorbell, .events = POLLIN };
	uint64_t v;
	int n = poll(&p, 1, timeout_ms);

	if (n > 0 && read(k->doorbell, &v, sizeof(v)) < 0 && errno != EAGAIN)
		perror("read doorbell");
	return n;
}

/* Writes n words of a shadow block under its seqlock: seq is odd while they change. */
static inline void ks_seqlock_write(uint32_t *seqp, uint32_t *to, const uint32_t *from, unsigned int n)
{
	uint32_t seq = *seqp;

	__atomic_store_n(seqp, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (unsigned int i = 0; i < n; i++)
		to[i] = from[i];
	__atomic_store_n(seqp, seq + 2, __ATOMIC_RELEASE);
}

/* Writes a per-file shadow block. */
static inline void ks_shadow(struct ks *k, uint32_t fh, uint32_t revents, uint32_t readable, uint32_t writable)
{
	struct devemu_shadow_file *s = &k->files[fh];
	const uint32_t v[3] = { revents, readable, writable };

	ks_seqlock_write(&s->seq, &s->revents, v, 3);
}

/* Writes the device-wide status words from the first one (the module shows them in sysfs). */
static inline void ks_status(struct ks *k, const uint32_t *words, unsigned int n)
{
	struct devemu_shadow *d = (struct devemu_shadow *)(k->win + DEVEMU_SHADOW_OFFSET);

	ks_seqlock_write(&d->seq, d->status, words, n);
}

static inline int ks_remove(const char *name)
{
	char buf[DEVEMU_DEVICE_NAME_MAX] = { 0 };
	int ctl = open("/dev/" DEVEMU_KSHIM_CONTROL_NAME, O_RDWR | O_CLOEXEC);
	int ret;

	if (ctl < 0)
		return -errno;
	snprintf(buf, sizeof(buf), "%s", name);
	ret = ioctl(ctl, DEVEMU_KSHIM_IOC_REMOVE, buf) < 0 ? -errno : 0;
	close(ctl);
	return ret;
}

#endif /* KSHIM_SERVER_H */
