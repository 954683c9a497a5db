// SPDX-License-Identifier: MIT
/*
 * kshim_hostile: a daemon that breaks the kshim protocol on purpose, for the
 * devemu_kshim.ko self-tests. The module must stay clean (no warning, oops or
 * leak) and its callers must get errors, never hang. Modes:
 *
 *   garbage  every answer is preceded by completions with a bad tag, a wrong
 *            epoch and a tag not in flight, and followed by a duplicate; the
 *            answers themselves cycle through bad values (see selftest.py,
 *            which drives the same sequence): file handles out of range,
 *            kernel-internal errnos, reads longer than asked, ioctl retry lists
 *            with huge counts/lengths/kernel addresses, endless retries, output
 *            larger than its room; the shadow registers hold a seqlock that is
 *            never stable and all-ones values
 *   tail     on the first request, moves the completion tail 1000 entries
 *            ahead; once detached (POLLHUP on the channel), ATTACHes again and
 *            answers every OPEN with EACCES
 *   stall    never answers anything, CANCEL included
 *   hup      on the first request, closes the irq eventfd
 *   die      on the first request, posts garbage and exits
 *   flood    before each answer, posts a thousand rounds of completions with
 *            random tags and wrong epochs
 *   fifo     stream FIFOs of 4 KiB: answers OPEN, then publishes 10 bytes
 *            "0123456789" in the receive FIFO with record, watermark and kick
 *            all-ones; on the next doorbell moves the receive tail 1 GiB ahead
 *            (a reader must get EIO, the channel is detached)
 *   fifo-tx  stream FIFOs of 4 KiB: answers OPEN, then moves the transmit
 *            head 5000 bytes ahead of anything written (a writer gets EIO)
 *   fifo-die stream FIFOs of 4 KiB: fills the receive FIFO, then exits with
 *            the bytes unread (they are dropped: EIO, no warning)
 *   fifo-loop stream FIFOs of 4 KiB made a loop of 100 bytes: the first OPEN
 *            publishes "0123456789" with adjust 0x7fffffff (far more in flight
 *            than the capacity) and discard 5000 (past the tail); the second
 *            sets adjust 0xc0000000 (far less than nothing); the third prints
 *            "txtail N", the transmit tail the module published
 *   fifo-divert the same loop, its receive FIFO diverted to requests by the
 *            first OPEN (rx holds "0123456789"): the first READ is answered
 *            "0123" with discard 4, the next ones "45" with discard 5000 (past
 *            the tail); the second OPEN ends the divert and prints "calls N
 *            waiters N", the receive FIFO's counts the module published
 *   ffifo    per-file receive FIFOs (3 of 4 KiB, no device-wide ones), an honest
 *            core: OPEN answers fh 0, 1, 2, ...; records of 24 bytes; the
 *            test's ioctls (kshim_test.h) push records into a file's FIFO,
 *            take a file's FIFO back (discard = tail) and divert it; a READ
 *            request of a file with a FIFO takes its first record (discard),
 *            any other READ is answered "byreq"
 *   ffifo-tail the same; the first OPEN moves fh 0's tail 1 GiB ahead (its
 *            reader gets EIO, the channel is detached)
 *   ffifo-die the same; the second OPEN fills fh 0's and fh 1's FIFOs with
 *            records, then exits with them unread (EIO, no warning)
 *
 * Usage: kshim_hostile MODE NAME. Prints "ready" once serving.
 */
#include <signal.h>
#include <stdbool.h>

#include "kshim_server.h"
#include "kshim_test.h"

#define FFIFO_COUNT 3U
#define FFIFO_SIZE 4096U

static struct ks k;
static const char *mode;
static unsigned int n_open, n_read, n_write, n_ioctl;

static void retry_list(struct devemu_sqe *sqe, uint32_t in_count, uint32_t out_count,
		       const struct devemu_iovec *iov, uint32_t n)
{
	uint8_t *slot = ks_slot(&k, sqe->tag);
	struct devemu_ioctl_retry hdr = { in_count, out_count };

	memcpy(slot, &hdr, sizeof(hdr));
	memcpy(slot + sizeof(hdr), iov, n * sizeof(*iov));
	ks_complete(&k, sqe, 0, 0, DEVEMU_CQE_F_IOCTL_RETRY);
}

/* The bad answers of garbage mode, in the order selftest.py expects them. */
static void garbage_answer(struct devemu_sqe *sqe)
{
	uint8_t *slot = ks_slot(&k, sqe->tag);
	struct devemu_iovec iov[2];
	unsigned int n;

	switch (sqe->opcode) {
	case DEVEMU_OP_OPEN:
		n = n_open++;
		if (n == 0)
			return ks_complete(&k, sqe, 5000, 0, 0); /* fh >= max_files */
		if (n == 1)
			return ks_complete(&k, sqe, -512, 0, 0); /* -ERESTARTSYS */
		if (n == 2)
			return ks_complete(&k, sqe, -516, 0, 0); /* -ERESTART_RESTARTBLOCK */
		if (n == 3)
			return ks_complete(&k, sqe, -ENOENT, 0, 0);
		return ks_complete(&k, sqe, (int32_t)(n % DEVEMU_MAX_FILES), 0, 0);
	case DEVEMU_OP_READ:
		n = n_read++;
		if (n == 0)
			return ks_complete(&k, sqe, (int32_t)sqe->len + 100, 0, 0);
		if (n == 1)
			return ks_complete(&k, sqe, -529, 0, 0); /* -EIOCBQUEUED */
		if (n == 2)
			return ks_complete(&k, sqe, 0x7fffffff, 0, 0);
		memcpy(slot, "xyz", 3);
		return ks_complete(&k, sqe, sqe->len < 3 ? (int32_t)sqe->len : 3, 0, 0);
	case DEVEMU_OP_WRITE:
		n = n_write++;
		if (n == 0)
			return ks_complete(&k, sqe, (int32_t)sqe->len + 1, 0, 0);
		if (n == 1)
			return ks_complete(&k, sqe, -4096, 0, 0); /* beyond every errno */
		return ks_complete(&k, sqe, (int32_t)sqe->len, 0, 0);
	case DEVEMU_OP_IOCTL:
		n = n_ioctl++;
		if (n == 0)
			return retry_list(sqe, 0xffffffffu, 0, NULL, 0);
		if (n == 1) {
			iov[0] = (struct devemu_iovec){ sqe->ioctl_arg, 1ull << 40 };
			return retry_list(sqe, 1, 0, iov, 1);
		}
		if (n == 2) {
			iov[0] = (struct devemu_iovec){ 0xffffffff81000000ull, 8 };
			return retry_list(sqe, 1, 0, iov, 1);
		}
		if (n == 3)
			return retry_list(sqe, 200, 200, NULL, 0);
		if (n == 4) {
			iov[0] = (struct devemu_iovec){ sqe->ioctl_arg, 4 };
			return retry_list(sqe, 1, 0, iov, 1);
		}
		if (n == 5)
			return ks_complete(&k, sqe, 0, sqe->out_len + 1, 0);
		if (n >= 6 && n < 6 + 16) { /* a retry that never ends */
			iov[0] = (struct devemu_iovec){ sqe->ioctl_arg, 4 };
			return retry_list(sqe, 1, 0, iov, 1);
		}
		if (n == 22) {
			iov[0] = (struct devemu_iovec){ sqe->ioctl_arg, 4 };
			return retry_list(sqe, 0, 1, iov, 1);
		}
		if (n == 23) {
			memcpy(slot, "HOST", 4);
			return ks_complete(&k, sqe, 42, 4, 0);
		}
		return ks_complete(&k, sqe, -ENOTTY, 0, 0);
	default:
		return ks_complete(&k, sqe, 0, 0, 0);
	}
}

static void garbage(struct devemu_sqe *sqe)
{
	uint32_t t = sqe->tag;

	if (sqe->opcode == DEVEMU_OP_CANCEL)
		return;
	ks_post(&k, k.depth + 3, sqe->epoch, 0, 0, 0);
	ks_post(&k, t, sqe->epoch + 1, 0, 0, 0);
	ks_post(&k, (t + 1) % k.depth, sqe->epoch, 1, 0, 0);
	ks_interrupt(&k);
	garbage_answer(sqe);
	/* A duplicate, in the same batch: once the caller has its answer the tag may be reused. */
	ks_post(&k, t, sqe->epoch, 0, 0, 0);
	ks_interrupt(&k);
}

static void flood(struct devemu_sqe *sqe)
{
	if (sqe->opcode == DEVEMU_OP_CANCEL)
		return;
	for (int round = 0; round < 1000; round++) {
		for (uint32_t i = 0; i < k.depth; i++)
			ks_post(&k, (uint32_t)random() % (2 * k.depth), sqe->epoch + 1 + (uint32_t)random() % 1000,
				(int32_t)random(), (uint32_t)random(), (uint16_t)random());
		ks_interrupt(&k);
	}
	switch (sqe->opcode) {
	case DEVEMU_OP_OPEN:
		ks_complete(&k, sqe, (int32_t)(n_open++ % DEVEMU_MAX_FILES), 0, 0);
		break;
	default:
		ks_complete(&k, sqe, 0, 0, 0);
	}
	ks_interrupt(&k);
}

/* The fifo modes: every request is answered plainly; the FIFOs carry the hostility. */
/*
 * fifo-divert: a loop whose receive FIFO is diverted to requests (uapi: Diverted) from the first OPEN
 * to the second; its READ answers hand back rx bytes through discard, honestly, then past the tail.
 */
static void fifo_divert(struct devemu_sqe *sqe)
{
	static unsigned int reads;

	if (sqe->opcode == DEVEMU_OP_OPEN && n_open == 0) {
		memcpy(k.rx_data, "0123456789", 10);
		ks_store(&k.rx->divert, 0xffffffffu); /* any non-zero value diverts */
		ks_store(&k.rx->tail, 10);
	} else if (sqe->opcode == DEVEMU_OP_OPEN) {
		ks_store(&k.rx->divert, 0);
		printf("calls %u waiters %u\n", ks_load(&k.rx->calls), ks_load(&k.rx->waiters));
		fflush(stdout);
	}
	if (sqe->opcode == DEVEMU_OP_READ) {
		/* The first answer takes "0123" (discard 4); the second "45" but names index 5000. */
		uint32_t n = reads++ ? 2 : 4;

		memcpy(ks_slot(&k, sqe->tag), k.rx_data + (reads == 1 ? 0 : 4), n);
		ks_store(&k.rx->discard, reads == 1 ? 4 : 5000);
		ks_complete(&k, sqe, (int32_t)n, 0, 0);
	} else if (sqe->opcode != DEVEMU_OP_CANCEL) {
		ks_complete(&k, sqe, sqe->opcode == DEVEMU_OP_OPEN ? (int32_t)n_open++ : 0, 0, 0);
	}
	k.isr |= DEVEMU_ISR_STREAM;
	ks_interrupt(&k);
}

static void fifo(struct devemu_sqe *sqe)
{
	static unsigned int doorbells;

	if (sqe->opcode == DEVEMU_OP_CANCEL)
		return;
	if (!strcmp(mode, "fifo-divert")) {
		fifo_divert(sqe);
		return;
	}
	ks_complete(&k, sqe, sqe->opcode == DEVEMU_OP_OPEN ? (int32_t)n_open++ : 0, 0, 0);
	if (sqe->opcode == DEVEMU_OP_OPEN && !strcmp(mode, "fifo") && !doorbells++) {
		memcpy(k.rx_data, "0123456789", 10);
		k.rx->record = 0xffffffffu;	/* clamped to the size: reads below it fail */
		k.rx->watermark = 0xffffffffu;
		k.rx->kick = 0xffffffffu;
		ks_store(&k.rx->tail, 10);
		k.isr |= DEVEMU_ISR_STREAM;
	} else if (sqe->opcode == DEVEMU_OP_OPEN && !strcmp(mode, "fifo-tx")) {
		ks_store(&k.tx->head, 5000);
		k.isr |= DEVEMU_ISR_STREAM;
	} else if (sqe->opcode == DEVEMU_OP_OPEN && !strcmp(mode, "fifo-loop")) {
		if (n_open == 1) {
			memcpy(k.rx_data, "0123456789", 10);
			ks_store(&k.rx->adjust, 0x7fffffffu);
			ks_store(&k.rx->discard, 5000);
			ks_store(&k.rx->tail, 10);
		} else if (n_open == 2) {
			ks_store(&k.rx->adjust, 0xc0000000u);
		} else {
			printf("txtail %u\n", ks_load(&k.tx->tail));
			fflush(stdout);
		}
		k.isr |= DEVEMU_ISR_STREAM;
	} else if (sqe->opcode == DEVEMU_OP_OPEN && !strcmp(mode, "fifo-die")) {
		memset(k.rx_data, 'x', k.rx_size);
		ks_store(&k.rx->tail, k.rx_size);
		k.isr |= DEVEMU_ISR_STREAM;
		ks_interrupt(&k);
		printf("filled\n");
		fflush(stdout);
		_exit(3);
	}
	ks_interrupt(&k);
}

/* Copies n bytes into (to_ring) or out of fh's per-file ring at index, wrapping. */
static void ffifo_copy(uint32_t fh, uint32_t index, uint8_t *buf, uint32_t n, bool to_ring)
{
	uint8_t *ring = ks_file_data(&k, fh);

	for (uint32_t i = 0; i < n; i++) {
		uint8_t *b = &ring[(index + i) & (k.file_size - 1)];

		if (to_ring)
			*b = buf[i];
		else
			buf[i] = *b;
	}
}

/* Publishes up to n records in fh's FIFO (as many as fit); returns how many. */
static uint32_t ffifo_push(uint32_t fh, uint32_t n)
{
	static uint32_t seq[FFIFO_COUNT];
	struct devemu_fifo *f = ks_file_ctl(&k, fh);
	uint32_t tail = f->tail, done;
	char rec[KSHIM_TEST_RECORD + 1];

	for (done = 0; done < n && tail - ks_load(&f->head) + KSHIM_TEST_RECORD <= k.file_size; done++) {
		int len = snprintf(rec, sizeof(rec), "f%u r%06u", fh, seq[fh]++);

		memset(rec + len, '.', KSHIM_TEST_RECORD - (size_t)len);
		rec[KSHIM_TEST_RECORD - 1] = '\n';
		ffifo_copy(fh, tail, (uint8_t *)rec, KSHIM_TEST_RECORD, true);
		tail += KSHIM_TEST_RECORD;
	}
	ks_store(&f->tail, tail); /* the records before the tail that publishes them */
	k.isr |= DEVEMU_ISR_STREAM;
	return done;
}

static void ffifo(struct devemu_sqe *sqe)
{
	struct devemu_fifo *f = sqe->fh < FFIFO_COUNT ? ks_file_ctl(&k, sqe->fh) : NULL;
	uint32_t fh, n;

	switch (sqe->opcode) {
	case DEVEMU_OP_CANCEL:
		return;
	case DEVEMU_OP_OPEN:
		fh = n_open++;
		ks_complete(&k, sqe, (int32_t)fh, 0, 0);
		if (!strcmp(mode, "ffifo-tail") && fh == 0) {
			ks_store(&ks_file_ctl(&k, 0)->tail, 1u << 30);
			k.isr |= DEVEMU_ISR_STREAM;
		} else if (!strcmp(mode, "ffifo-die") && fh == 1) {
			ffifo_push(0, 1000);
			ffifo_push(1, 1000);
			ks_interrupt(&k);
			printf("filled\n");
			fflush(stdout);
			_exit(3);
		}
		break;
	case DEVEMU_OP_READ:
		/* The core takes the first record back from the FIFO and hands it over (the module holds its lock). */
		n = f ? ks_load(&f->tail) - ks_load(&f->head) : 0;
		if (n >= KSHIM_TEST_RECORD && sqe->len >= KSHIM_TEST_RECORD) {
			ffifo_copy(sqe->fh, f->head, ks_slot(&k, sqe->tag), KSHIM_TEST_RECORD, false);
			ks_store(&f->discard, f->head + KSHIM_TEST_RECORD);
			ks_complete(&k, sqe, (int32_t)KSHIM_TEST_RECORD, 0, 0);
		} else {
			n = sqe->len < 5 ? sqe->len : 5;
			memcpy(ks_slot(&k, sqe->tag), "byreq", n);
			ks_complete(&k, sqe, (int32_t)n, 0, 0);
		}
		break;
	case DEVEMU_OP_IOCTL:
		fh = (uint32_t)(sqe->ioctl_arg >> 16) == 0xffff ? sqe->fh : (uint32_t)(sqe->ioctl_arg >> 16);
		if (sqe->ioctl_cmd == KSHIM_TEST_IOC_PUSH && fh < FFIFO_COUNT) {
			ks_complete(&k, sqe, (int32_t)ffifo_push(fh, (uint32_t)(sqe->ioctl_arg & 0xffff)), 0, 0);
		} else if (sqe->ioctl_cmd == KSHIM_TEST_IOC_TAKE && f) {
			/* The module holds the file's FIFO lock: its head stands still; hand everything back. */
			n = ks_load(&f->tail) - ks_load(&f->head);
			ks_store(&f->discard, ks_load(&f->tail));
			ks_complete(&k, sqe, (int32_t)n, 0, 0);
		} else if (sqe->ioctl_cmd == KSHIM_TEST_IOC_DIVERT && f) {
			ks_store(&f->divert, sqe->ioctl_arg ? 1 : 0);
			k.isr |= DEVEMU_ISR_STREAM;
			ks_complete(&k, sqe, 0, 0, 0);
		} else {
			ks_complete(&k, sqe, -ENOTTY, 0, 0);
		}
		break;
	default:
		ks_complete(&k, sqe, 0, 0, 0);
	}
	ks_interrupt(&k);
}

/* Prints "hup-seen" once the channel polls POLLHUP and the window says NOSRV (what selftest.py waits for). */
static void wait_detached(void)
{
	struct pollfd p = { .fd = k.chan, .events = POLLIN };
	int n = poll(&p, 1, 5000);
	uint32_t status = __atomic_load_n(&k.regs->status, __ATOMIC_ACQUIRE);

	if (n == 1 && (p.revents & POLLHUP) && status == DEVEMU_STATUS_NOSRV)
		printf("hup-seen\n");
	else
		printf("no-hup revents=%#x status=%#x\n", p.revents, status);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct devemu_sqe sqe;
	bool first = true;
	int ret;

	if (argc != 3) {
		fprintf(stderr, "usage: kshim_hostile garbage|tail|stall|hup|die|flood|fifo|fifo-tx|fifo-die|fifo-loop|fifo-divert|ffifo|ffifo-tail|ffifo-die NAME\n");
		return 2;
	}
	mode = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (!strncmp(mode, "ffifo", 5))
		ret = ks_connect_files(&k, argv[2], 0, 8, 4096, DEVEMU_KSHIM_FEATURES, 0666, 0, 0, 0, FFIFO_COUNT,
				       FFIFO_SIZE);
	else if (!strncmp(mode, "fifo", 4))
		ret = ks_connect_fifo(&k, argv[2], 0, 8, 4096, DEVEMU_KSHIM_FEATURES, 0666, 4096, 4096,
				      strcmp(mode, "fifo-loop") && strcmp(mode, "fifo-divert") ? 0 : 100);
	else
		ret = ks_connect(&k, argv[2], 0, 8, 4096, DEVEMU_KSHIM_FEATURES, 0666);
	if (ret < 0) {
		fprintf(stderr, "kshim_hostile: ADD %s: %s\n", argv[2], strerror(-ret));
		return 1;
	}
	if (!strcmp(mode, "garbage"))
		for (uint32_t fh = 0; fh < DEVEMU_MAX_FILES; fh++) {
			k.files[fh].seq = 1; /* an update forever in progress */
			k.files[fh].revents = k.files[fh].readable = k.files[fh].writable = 0xffffffffu;
		}
	for (uint32_t fh = 0; fh < k.file_count; fh++)
		ks_file_ctl(&k, fh)->record = KSHIM_TEST_RECORD;
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		if (!ks_next(&k, &sqe)) {
			if (ks_wait(&k, -1) > 0 && !strcmp(mode, "fifo") && n_open && !k.rx->kick) {
				/* The module took the kick: answer with a runaway tail. */
				ks_store(&k.rx->tail, ks_load(&k.rx->tail) + (1u << 30));
				k.isr |= DEVEMU_ISR_STREAM;
				ks_interrupt(&k);
				printf("moved\n");
				fflush(stdout);
			}
			continue;
		}
		if (!strncmp(mode, "ffifo", 5)) {
			ffifo(&sqe);
		} else if (!strncmp(mode, "fifo", 4)) {
			fifo(&sqe);
		} else if (!strcmp(mode, "garbage")) {
			garbage(&sqe);
		} else if (!strcmp(mode, "flood")) {
			flood(&sqe);
		} else if (!strcmp(mode, "stall")) {
			continue;
		} else if (!strcmp(mode, "die")) {
			ks_post(&k, sqe.tag, sqe.epoch + 7, -1, ~0u, 0xffff);
			ks_interrupt(&k);
			_exit(3);
		} else if (!strcmp(mode, "hup") && first) {
			close(k.irq);
			wait_detached();
		} else if (!strcmp(mode, "tail") && first) {
			k.cq_tail += 1000;
			ks_store(&k.cq->tail, k.cq_tail);
			k.isr |= DEVEMU_ISR_CQ;
			ks_interrupt(&k);
			wait_detached();
			close(k.chan);
			munmap(k.win, k.size);
			ret = ks_connect(&k, argv[2], 1, 8, 4096, DEVEMU_KSHIM_FEATURES, 0);
			printf("reattached %s epoch=%u\n", ret ? strerror(-ret) : "ok", k.epoch);
			fflush(stdout);
		} else if (!strcmp(mode, "tail") && sqe.opcode != DEVEMU_OP_CANCEL) {
			ks_complete(&k, &sqe, sqe.opcode == DEVEMU_OP_OPEN ? -EACCES : -EIO, 0, 0);
			ks_interrupt(&k);
		}
		first = false;
	}
}
