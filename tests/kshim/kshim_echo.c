// SPDX-License-Identifier: MIT
/*
 * kshim_echo: a stand-in daemon for the devemu_kshim.ko self-tests. It serves
 * /dev/NAME through a kshim channel as a loopback FIFO, the way devemud's
 * loopback model does: reads return what was written, block when empty (or
 * EAGAIN under O_NONBLOCK), writes block while full, CANCEL ends a parked
 * request with EINTR (or the count a write moved), poll readiness is published
 * in the shadow registers, and ioctls exercise the retry protocol:
 * DEVEMU_IOC_NREAD and KSHIM_TEST_IOC_CALLER (size-encoded) and
 * KSHIM_TEST_IOC_REVERSE (a pointer-chasing one). KSHIM_TEST_IOC_CALLER says
 * which requests came from a 32-bit caller; the device-wide status words hold
 * the bytes queued and the open files.
 *
 * Usage: kshim_echo [-a] [-r] [-f FEATURES] [-d DEPTH] [-s SLOT] [-c CAPACITY] [-m MODE] NAME
 *   -a  ATTACH to an existing NAME instead of ADD    -r  REMOVE NAME on SIGTERM/SIGINT
 * Prints "ready epoch=N" once serving; on exit "opens N releases N cancels N".
 */
#include <signal.h>
#include <stdbool.h>

#include "kshim_server.h"
#include "kshim_test.h"

#define MAX_FH DEVEMU_MAX_FILES

struct parked {
	bool used;
	struct devemu_sqe sqe;
	uint32_t progress;
};

static struct ks k;
static uint8_t *fifo;
static size_t cap = 65536, fifo_head, fifo_len;
static bool open_fh[MAX_FH];
static unsigned int open_files;
static uint32_t compat_seen[MAX_FH]; /* bit N: the latest request with opcode N was a 32-bit caller's */
static struct parked parked[DEVEMU_MAX_QUEUE_DEPTH];
static unsigned long opens, releases, cancels;
static volatile sig_atomic_t stop;
static bool changed, arrival;
static struct {
	uint32_t revents, readable, writable;
} published[MAX_FH];

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void fifo_push(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fifo[(fifo_head + fifo_len + i) % cap] = p[i];
	fifo_len += n;
	changed = true;
	arrival = n > 0;
}

static void fifo_pop(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = fifo[(fifo_head + i) % cap];
	fifo_head = (fifo_head + n) % cap;
	fifo_len -= n;
	changed = true;
}

static uint32_t revents(void)
{
	return (fifo_len ? POLLIN | POLLRDNORM : 0) | (fifo_len < cap ? POLLOUT | POLLWRNORM : 0);
}

static void retry(const struct devemu_sqe *sqe, const struct devemu_iovec *in, uint32_t nin,
		  const struct devemu_iovec *out, uint32_t nout)
{
	uint8_t *slot = ks_slot(&k, sqe->tag);
	struct devemu_ioctl_retry hdr = { nin, nout };

	memcpy(slot, &hdr, sizeof(hdr));
	memcpy(slot + sizeof(hdr), in, nin * sizeof(*in));
	memcpy(slot + sizeof(hdr) + nin * sizeof(*in), out, nout * sizeof(*out));
	ks_complete(&k, sqe, 0, 0, DEVEMU_CQE_F_IOCTL_RETRY);
}

/* Answers an ioctl whose argument is one __u32 to write back (a retry round first, if unrestricted). */
static void reply_u32(const struct devemu_sqe *sqe, uint32_t value)
{
	if (sqe->out_len < 4) {
		struct devemu_iovec out = { sqe->ioctl_arg, 4 };

		if (sqe->flags & DEVEMU_SQE_F_IOCTL_RESTRICTED)
			return ks_complete(&k, sqe, -ENOTTY, 0, 0);
		return retry(sqe, NULL, 0, &out, 1);
	}
	memcpy(ks_slot(&k, sqe->tag), &value, 4);
	ks_complete(&k, sqe, 0, 4, 0);
}

static void do_ioctl(const struct devemu_sqe *sqe)
{
	bool restricted = sqe->flags & DEVEMU_SQE_F_IOCTL_RESTRICTED;
	uint8_t *slot = ks_slot(&k, sqe->tag);
	struct kshim_test_rev rev;
	uint8_t tmp[KSHIM_TEST_REV_MAX];

	switch (sqe->ioctl_cmd) {
	case DEVEMU_IOC_NREAD:
	case FIONREAD: /* only without DEVEMU_F_SHADOW_POLL */
		return reply_u32(sqe, (uint32_t)fifo_len);
	case KSHIM_TEST_IOC_CALLER:
		return reply_u32(sqe, compat_seen[sqe->fh]);
	case KSHIM_TEST_IOC_REVERSE:
		if (restricted)
			return ks_complete(&k, sqe, -ENOTTY, 0, 0);
		if (sqe->len < sizeof(rev)) {
			struct devemu_iovec in = { sqe->ioctl_arg, sizeof(rev) };

			return retry(sqe, &in, 1, NULL, 0);
		}
		memcpy(&rev, slot, sizeof(rev));
		if (rev.len > KSHIM_TEST_REV_MAX)
			return ks_complete(&k, sqe, -EINVAL, 0, 0);
		if (sqe->len < sizeof(rev) + rev.len || sqe->out_len < rev.len) {
			struct devemu_iovec in[2] = { { sqe->ioctl_arg, sizeof(rev) }, { rev.ptr, rev.len } };
			struct devemu_iovec out = { rev.ptr, rev.len };

			return retry(sqe, in, 2, &out, 1);
		}
		for (uint32_t i = 0; i < rev.len; i++)
			tmp[i] = slot[sizeof(rev) + rev.len - 1 - i];
		memcpy(slot, tmp, rev.len);
		return ks_complete(&k, sqe, (int32_t)rev.len, rev.len, 0);
	default:
		return ks_complete(&k, sqe, -ENOTTY, 0, 0);
	}
}

/* Tries a READ/WRITE/IOCTL; false: it must wait (park). */
static bool attempt(struct parked *p)
{
	const struct devemu_sqe *sqe = &p->sqe;
	bool nonblock = sqe->flags & DEVEMU_SQE_F_NONBLOCK;
	uint8_t *slot = ks_slot(&k, sqe->tag);
	size_t n;

	switch (sqe->opcode) {
	case DEVEMU_OP_READ:
		if (!fifo_len) {
			if (!nonblock)
				return false;
			ks_complete(&k, sqe, -EAGAIN, 0, 0);
			return true;
		}
		n = sqe->len < fifo_len ? sqe->len : fifo_len;
		fifo_pop(slot, n);
		ks_complete(&k, sqe, (int32_t)n, 0, 0);
		return true;
	case DEVEMU_OP_WRITE:
		n = sqe->len - p->progress;
		if (n > cap - fifo_len)
			n = cap - fifo_len;
		fifo_push(slot + p->progress, n);
		p->progress += n;
		if (p->progress == sqe->len || nonblock) {
			ks_complete(&k, sqe, p->progress ? (int32_t)p->progress : -EAGAIN, 0, 0);
			return true;
		}
		return false;
	default:
		do_ioctl(sqe);
		return true;
	}
}

/* Remembers whether the latest request of this opcode on fh came from a 32-bit caller. */
static void note_caller(uint32_t fh, const struct devemu_sqe *sqe)
{
	if (sqe->flags & DEVEMU_SQE_F_COMPAT)
		compat_seen[fh] |= 1u << sqe->opcode;
	else
		compat_seen[fh] &= ~(1u << sqe->opcode);
}

static void process(const struct devemu_sqe *sqe)
{
	struct parked req = { true, *sqe, 0 };
	uint32_t fh;

	if (sqe->tag >= k.depth) {
		fprintf(stderr, "kshim_echo: bad tag %u\n", sqe->tag);
		return;
	}
	switch (sqe->opcode) {
	case DEVEMU_OP_CANCEL:
		for (uint32_t i = 0; i < k.depth; i++) {
			struct parked *p = &parked[i];

			if (p->used && p->sqe.tag == sqe->tag) {
				cancels++;
				ks_complete(&k, &p->sqe, p->progress ? (int32_t)p->progress : -EINTR, 0, 0);
				p->used = false;
			}
		}
		return;
	case DEVEMU_OP_OPEN:
		for (fh = 0; fh < MAX_FH && open_fh[fh]; fh++)
			;
		if (fh == MAX_FH)
			return ks_complete(&k, sqe, -ENFILE, 0, 0);
		open_fh[fh] = true;
		open_files++;
		compat_seen[fh] = 0;
		note_caller(fh, sqe);
		published[fh].revents = published[fh].readable = published[fh].writable = ~0u;
		opens++;
		changed = true;
		return ks_complete(&k, sqe, (int32_t)fh, 0, 0);
	}
	if (sqe->fh >= MAX_FH || !open_fh[sqe->fh])
		return ks_complete(&k, sqe, -EBADF, 0, 0);
	note_caller(sqe->fh, sqe);
	switch (sqe->opcode) {
	case DEVEMU_OP_RELEASE:
		for (uint32_t i = 0; i < k.depth; i++) {
			if (parked[i].used && parked[i].sqe.fh == sqe->fh) {
				ks_complete(&k, &parked[i].sqe, -EBADF, 0, 0);
				parked[i].used = false;
			}
		}
		open_fh[sqe->fh] = false;
		open_files--;
		changed = true;
		releases++;
		return ks_complete(&k, sqe, 0, 0, 0);
	case DEVEMU_OP_POLL:
		return ks_complete(&k, sqe, 0, revents() & (sqe->out_len | POLLERR | POLLHUP), 0);
	case DEVEMU_OP_READ:
	case DEVEMU_OP_WRITE:
	case DEVEMU_OP_IOCTL:
		if (sqe->len > k.slot || sqe->out_len > k.slot)
			return ks_complete(&k, sqe, -EINVAL, 0, 0);
		if (!attempt(&req))
			parked[sqe->tag] = req;
		return;
	default:
		return ks_complete(&k, sqe, -EINVAL, 0, 0);
	}
}

/* Like the core: a file's shadow is rewritten when its values change, or on an arrival (for EPOLLET). */
static void publish(void)
{
	uint32_t rev = revents(), rd = (uint32_t)fifo_len, wr = (uint32_t)(cap - fifo_len);
	uint32_t words[2];

	if (!changed)
		return;
	words[KSHIM_TEST_WORD_QUEUED] = (uint32_t)fifo_len;
	words[KSHIM_TEST_WORD_FILES] = open_files;
	ks_status(&k, words, 2);
	for (uint32_t fh = 0; fh < MAX_FH; fh++) {
		if (!open_fh[fh] || (!arrival && published[fh].revents == rev && published[fh].readable == rd &&
				     published[fh].writable == wr))
			continue;
		ks_shadow(&k, fh, rev, rd, wr);
		published[fh].revents = rev;
		published[fh].readable = rd;
		published[fh].writable = wr;
		k.isr |= DEVEMU_ISR_SHADOW;
	}
	changed = arrival = false;
}

static void dispatch(void)
{
	struct devemu_sqe sqe;
	bool progress;

	while (ks_next(&k, &sqe))
		process(&sqe);
	do {
		progress = false;
		for (uint32_t i = 0; i < k.depth; i++) {
			if (parked[i].used && attempt(&parked[i])) {
				parked[i].used = false;
				progress = true;
			}
		}
	} while (progress);
	publish();
	ks_interrupt(&k);
}

int main(int argc, char **argv)
{
	uint32_t depth = 0, slot = 0, mode = 0600;
	uint64_t features = DEVEMU_KSHIM_FEATURES;
	bool attach = false, remove = false;
	struct sigaction sa = { .sa_handler = on_signal };
	int opt, ret;

	while ((opt = getopt(argc, argv, "arf:d:s:c:m:")) != -1) {
		switch (opt) {
		case 'a': attach = true; break;
		case 'r': remove = true; break;
		case 'f': features = strtoull(optarg, NULL, 0); break;
		case 'd': depth = strtoul(optarg, NULL, 0); break;
		case 's': slot = strtoul(optarg, NULL, 0); break;
		case 'c': cap = strtoul(optarg, NULL, 0); break;
		case 'm': mode = strtoul(optarg, NULL, 8); break;
		default: goto usage;
		}
	}
	if (optind + 1 != argc || !cap)
		goto usage;
	fifo = malloc(cap);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	ret = ks_connect(&k, argv[optind], attach, depth, slot, features, mode);
	if (ret < 0) {
		fprintf(stderr, "kshim_echo: %s %s: %s\n", attach ? "ATTACH" : "ADD", argv[optind], strerror(-ret));
		return 1;
	}
	printf("ready epoch=%u depth=%u slot=%u\n", k.epoch, k.depth, k.slot);
	fflush(stdout);
	while (!stop) {
		dispatch();
		ks_wait(&k, -1);
	}
	dispatch(); /* what was submitted before the signal, e.g. a RELEASE (close does not wait for it) */
	if (remove && (ret = ks_remove(argv[optind])) < 0)
		fprintf(stderr, "kshim_echo: REMOVE %s: %s\n", argv[optind], strerror(-ret));
	fprintf(stderr, "opens %lu releases %lu cancels %lu\n", opens, releases, cancels);
	return 0;
usage:
	fprintf(stderr, "usage: kshim_echo [-a] [-r] [-f FEATURES] [-d DEPTH] [-s SLOT] [-c CAPACITY] [-m MODE] NAME\n");
	return 2;
}
