// SPDX-License-Identifier: MIT
/*
 * kshim_fuzz_daemon: a seeded random hostile daemon for devemu_kshim.ko. It serves NAME with stream
 * FIFOs and answers each request with a random mix of honest and hostile behaviour: results out of
 * range and kernel-internal errnos, completions with wrong tags, epochs, flags and duplicates, ioctl
 * retry lists with wild counts, addresses and lengths, shadow registers with torn seqlocks and
 * all-ones values, FIFO indices and record/watermark/kick/divert values anywhere, eventfd storms,
 * completion tails thrown ahead, the interrupt eventfd closed, answers held back and given late.
 * Every request is answered in the end (within about 50 ms), so no client waits on a daemon that is
 * still there; when the module detaches it (a protocol error), it ATTACHes again and goes on.
 *
 * Usage: kshim_fuzz_daemon NAME SEED SECONDS. Prints "ready seed SEED", then after SECONDS a line of
 * counts ("requests N hostile N reattached N") and exits 0. The same seed makes the same choices;
 * the interleaving with clients follows the scheduler.
 */
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "kshim_server.h"

#define FIFO_SIZE 4096u
#define HELD_MAX 64

static struct ks k;
static const char *name;
static unsigned long requests, hostile, reattached;
static uint32_t next_fh;

/* Requests held back, answered honestly later (or on their CANCEL). */
static struct held {
	struct devemu_sqe sqe;
	int rounds;
} held[HELD_MAX];
static unsigned int n_held;

static uint32_t rnd(uint32_t n)
{
	return n ? (uint32_t)random() % n : 0;
}

static bool chance(uint32_t percent)
{
	return rnd(100) < percent;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void connect_or_die(int attach)
{
	int ret = ks_connect_fifo(&k, name, attach, 8, 4096, DEVEMU_KSHIM_FEATURES, 0666, FIFO_SIZE, FIFO_SIZE, 0);

	if (ret < 0) {
		fprintf(stderr, "kshim_fuzz_daemon: %s %s: %s\n", attach ? "ATTACH" : "ADD", name, strerror(-ret));
		exit(1);
	}
}

/* Reconnects once the module has detached this daemon (NOSRV in the window). */
static void reattach_if_detached(void)
{
	if (!(ks_load(&k.regs->status) & DEVEMU_STATUS_NOSRV))
		return;
	close(k.chan);
	close(k.ctl);
	close(k.doorbell);
	if (k.irq >= 0)
		close(k.irq);
	munmap(k.win, k.size);
	n_held = 0; /* their callers got EIO with the detach */
	connect_or_die(1);
	reattached++;
}

/* The answer an honest device would give. */
static void honest(const struct devemu_sqe *sqe)
{
	uint8_t *slot = ks_slot(&k, sqe->tag);
	uint32_t n;

	switch (sqe->opcode) {
	case DEVEMU_OP_OPEN:
		ks_complete(&k, sqe, (int32_t)(next_fh++ % DEVEMU_MAX_FILES), 0, 0);
		break;
	case DEVEMU_OP_READ:
		n = sqe->len ? 1 + rnd(sqe->len < k.slot ? sqe->len : k.slot) : 0;
		for (uint32_t i = 0; i < n; i++)
			slot[i] = (uint8_t)random();
		ks_complete(&k, sqe, (int32_t)n, 0, 0);
		break;
	case DEVEMU_OP_WRITE:
		ks_complete(&k, sqe, (int32_t)sqe->len, 0, 0);
		break;
	case DEVEMU_OP_IOCTL:
		ks_complete(&k, sqe, chance(50) ? -ENOTTY : 0, 0, 0);
		break;
	case DEVEMU_OP_POLL:
		ks_complete(&k, sqe, 0, sqe->out_len & (POLLIN | POLLOUT), 0);
		break;
	case DEVEMU_OP_CANCEL:
		ks_complete(&k, sqe, -EINTR, 0, 0);
		break;
	default:
		ks_complete(&k, sqe, 0, 0, 0);
	}
}

static int32_t wild_result(void)
{
	static const int32_t values[] = { -512, -513, -514, -515, -516, -517, -518, -529, -4096, -1, 0x7fffffff,
					  (int32_t)0x80000000, 5000, 65536 };

	return chance(50) ? values[rnd(sizeof(values) / sizeof(values[0]))] : (int32_t)random();
}

static void wild_retry_list(const struct devemu_sqe *sqe)
{
	static const uint64_t bases[] = { 0, 1, 0xffffffff81000000ull, 0x7fffffffffffull, 0xfffffffffffff000ull };
	uint8_t *slot = ks_slot(&k, sqe->tag);
	struct devemu_ioctl_retry hdr = { rnd(4), rnd(4) };
	uint32_t fit = (k.slot - sizeof(hdr)) / sizeof(struct devemu_iovec);

	if (chance(20))
		hdr.in_count = (uint32_t)random();
	if (chance(20))
		hdr.out_count = (uint32_t)random();
	memcpy(slot, &hdr, sizeof(hdr));
	for (uint32_t i = 0; i < hdr.in_count + hdr.out_count && i < fit && i < 8; i++) {
		struct devemu_iovec v;

		v.base = chance(60) ? sqe->ioctl_arg + rnd(64) : bases[rnd(sizeof(bases) / sizeof(bases[0]))];
		v.len = chance(70) ? rnd(64) : (uint64_t)random() << rnd(32);
		memcpy(slot + sizeof(hdr) + i * sizeof(v), &v, sizeof(v));
	}
	ks_complete(&k, sqe, 0, 0, DEVEMU_CQE_F_IOCTL_RETRY);
}

static void wild_fifo(void)
{
	struct devemu_fifo *f = chance(50) ? k.rx : k.tx;

	switch (rnd(8)) {
	case 0: /* publish what fits, or more */
		if (f == k.rx)
			ks_store(&k.rx->tail, ks_load(&k.rx->head) + (chance(80) ? rnd(FIFO_SIZE + 1) : (uint32_t)random()));
		else
			ks_store(&k.tx->head, ks_load(&k.tx->tail) - (chance(80) ? rnd(FIFO_SIZE) : (uint32_t)random()));
		break;
	case 1:
		f->record = chance(50) ? rnd(64) : (uint32_t)random();
		break;
	case 2:
		f->watermark = (uint32_t)random();
		break;
	case 3:
		f->kick = (uint32_t)random();
		break;
	case 4: /* the driver's own index, which the core must never write */
		if (f == k.rx)
			ks_store(&k.rx->head, (uint32_t)random());
		else
			ks_store(&k.tx->tail, (uint32_t)random());
		break;
	case 5: /* callers diverted to requests, or back, mid-call */
		f->divert = chance(50) ? 0 : (uint32_t)random();
		break;
	case 6: /* the driver's counts, which it publishes and never reads back */
		f->calls = (uint32_t)random();
		f->waiters = (uint32_t)random();
		break;
	default:
		memset(f == k.rx ? k.rx_data : k.tx_data, (int)random(), FIFO_SIZE);
	}
	k.isr |= DEVEMU_ISR_STREAM;
}

/* One hostile act beside (or instead of) the answer to sqe; true if sqe was answered. */
static bool hostile_act(const struct devemu_sqe *sqe)
{
	uint32_t fh = rnd(DEVEMU_MAX_FILES);
	uint64_t one = 1;

	hostile++;
	switch (rnd(14)) {
	case 0:
		ks_complete(&k, sqe, wild_result(), (uint32_t)random(), 0);
		return true;
	case 1:
		ks_complete(&k, sqe, sqe->opcode == DEVEMU_OP_OPEN ? (int32_t)rnd(1000) : 0, 0, (uint16_t)random());
		return true;
	case 2: /* a wrong tag, a wrong epoch, then a tag not in flight */
		ks_post(&k, rnd(4 * k.depth), sqe->epoch, 0, 0, 0);
		ks_post(&k, sqe->tag, sqe->epoch + 1 + rnd(100), 0, 0, 0);
		return false;
	case 3:
		if (sqe->opcode != DEVEMU_OP_IOCTL)
			return false;
		wild_retry_list(sqe);
		return true;
	case 4:
		ks_complete(&k, sqe, 0, sqe->out_len + 1 + rnd(1u << 20), 0);
		return true;
	case 5: {
		struct devemu_shadow_file *s = &k.files[fh];

		if (chance(50))
			ks_shadow(&k, fh, (uint32_t)random(), (uint32_t)random(), (uint32_t)random());
		else
			__atomic_store_n(&s->seq, s->seq | 1, __ATOMIC_RELEASE); /* torn, until the next write */
		k.isr |= DEVEMU_ISR_SHADOW;
		return false;
	}
	case 6:
	case 7:
		wild_fifo();
		return false;
	case 8:
		for (int i = 0; i < 200; i++)
			if (k.irq >= 0 && write(k.irq, &one, sizeof(one)) < 0)
				break;
		return false;
	case 9: /* hold it back: answered later */
		if (sqe->opcode == DEVEMU_OP_CANCEL || n_held == HELD_MAX)
			return false;
		held[n_held++] = (struct held){ *sqe, 1 + (int)rnd(5) };
		return true;
	case 10:
		if (!chance(10))
			return false;
		k.cq_tail += 1 + rnd(10000); /* the module detaches */
		ks_store(&k.cq->tail, k.cq_tail);
		k.isr |= DEVEMU_ISR_CQ;
		return false;
	case 11:
		if (!chance(5) || k.irq < 0)
			return false;
		close(k.irq); /* the module detaches */
		k.irq = -1;
		return false;
	case 12:
		ks_complete(&k, sqe, 0, 0, 0);
		ks_post(&k, sqe->tag, sqe->epoch, wild_result(), 0, 0); /* a duplicate */
		return true;
	default:
		__atomic_store_n(&k.regs->isr, (uint32_t)random(), __ATOMIC_RELEASE);
		return false;
	}
}

static void answer_held(bool all)
{
	for (unsigned int i = 0; i < n_held;) {
		if (all || --held[i].rounds <= 0) {
			honest(&held[i].sqe);
			held[i] = held[--n_held];
		} else {
			i++;
		}
	}
}

int main(int argc, char **argv)
{
	struct devemu_sqe sqe;
	double end;
	unsigned long seed;

	if (argc != 4) {
		fprintf(stderr, "usage: kshim_fuzz_daemon NAME SEED SECONDS\n");
		return 2;
	}
	name = argv[1];
	seed = strtoul(argv[2], NULL, 0);
	end = now() + strtod(argv[3], NULL);
	srandom((unsigned int)seed);
	signal(SIGPIPE, SIG_IGN);
	connect_or_die(0);
	printf("ready seed %lu\n", seed);
	fflush(stdout);

	while (now() < end) {
		if (!ks_next(&k, &sqe)) {
			answer_held(false);
			if (k.irq >= 0)
				ks_interrupt(&k);
			ks_wait(&k, 10);
			reattach_if_detached();
			continue;
		}
		requests++;
		if (sqe.opcode == DEVEMU_OP_CANCEL) {
			/* End a held request the caller gave up on; or let CANCEL race its answer. */
			for (unsigned int i = 0; i < n_held; i++)
				if (held[i].sqe.tag == sqe.tag) {
					ks_complete(&k, &held[i].sqe, -EINTR, 0, 0);
					held[i] = held[--n_held];
					break;
				}
		} else if (!chance(30) || !hostile_act(&sqe)) {
			honest(&sqe);
		}
		if (k.irq >= 0)
			ks_interrupt(&k);
		reattach_if_detached();
	}
	answer_held(true);
	if (k.irq >= 0)
		ks_interrupt(&k);
	printf("requests %lu hostile %lu reattached %lu\n", requests, hostile, reattached);
	fflush(stdout);
	return 0;
}
