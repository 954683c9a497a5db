// SPDX-License-Identifier: GPL-2.0
/*
 * devemu_kshim: the channel to the daemon. The device window (registers,
 * shadow registers, rings, data slots) in vmalloc memory that the daemon maps,
 * tags, submission with doorbell suppression, and the interrupt: a wait-queue
 * callback on the daemon's irq eventfd that drains the completion ring (the
 * shape of KVM's irqfd).
 *
 * The daemon is untrusted. The module keeps its own copy of the geometry and
 * of every index, accepts a completion only for a tag it has in flight in the
 * current epoch, bounds every count it is given, and never follows a value
 * from the window. A misbehaving daemon can make requests fail, nothing more.
 */
#include <linux/bitmap.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/mm.h>
#include <linux/pid_namespace.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/vmalloc.h>

#include "kshim.h"

/* Reads of a shadow block that may see an update in progress, at most. */
#define KSHIM_SEQLOCK_TRIES 16

static atomic_t kshim_window_ids = ATOMIC_INIT(0);

/* The daemon broke the protocol: counted, logged (rate-limited), no more. */
void kshim_protocol_error(struct kshim_device *kdev, const char *what)
{
	atomic64_inc(&kdev->protocol_errors);
	dev_warn_ratelimited(&kdev->dev, "daemon protocol error: %s\n", what);
}

struct kshim_layout {
	u64 sq;
	u64 cq;
	u64 data;
	u64 fifo;	/* 0: no stream FIFOs */
	u64 file_fifo;	/* 0: no per-file FIFOs */
	u64 size;
};

/* The layout of a geometry, exactly as the core computes and checks it. */
static void kshim_layout_of(u32 depth, u32 slot_size, u32 rx_size,
			    u32 tx_size, u32 file_count, u32 file_size,
			    struct kshim_layout *l)
{
	l->sq = devemu_window_sq_offset();
	l->cq = devemu_window_cq_offset(depth);
	l->data = devemu_window_data_offset(depth);
	l->fifo = rx_size || tx_size ?
		  devemu_window_fifo_offset(depth, slot_size) : 0;
	l->file_fifo = file_count ?
		       devemu_window_file_fifo_offset(depth, slot_size,
						      rx_size, tx_size) : 0;
	l->size = devemu_window_total_size(depth, slot_size, rx_size, tx_size,
					   file_count, file_size);
}

static void kshim_eventfd_signal(struct eventfd_ctx *ctx)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

/*
 * Rings the doorbell if the core asked for it. Process context with no lock
 * held: eventfd_signal() must not nest in the irq eventfd's wake-up, and the
 * doorbell's lock must not nest in kdev->lock (it is the same lock class).
 */
static void kshim_kick(struct kshim_channel *ch)
{
	/*
	 * The tail store before the flags load. Pairs with the core, which
	 * sets NEED_KICK, fences, and looks at the tail again before it
	 * sleeps: either it sees the new entries or we see the flag.
	 */
	smp_mb();
	if (!(ch->features & DEVEMU_F_NEED_KICK) ||
	    (READ_ONCE(ch->sq->flags) & DEVEMU_RING_NEED_KICK)) {
		atomic64_inc(&ch->kdev->doorbells);
		kshim_eventfd_signal(ch->doorbell);
	}
}

/* The doorbell for entries the irq callback published. */
static void kshim_kick_work(struct work_struct *work)
{
	kshim_kick(container_of(work, struct kshim_channel, kick_work));
}

/*
 * After a caller moved a FIFO index: ring the doorbell if the core asked for
 * it (kick) and the fill crossed its watermark. fill is the module's view
 * after the move. Process context, no spinlock held.
 */
void kshim_fifo_kick(struct kshim_channel *ch, struct kshim_fifo *f, u32 fill,
		     bool rx)
{
	u32 wm;

	/* Our index store before the kick load; pairs with the core's fence. */
	smp_mb();
	if (!READ_ONCE(f->ctl->kick))
		return;
	wm = min(READ_ONCE(f->ctl->watermark), f->size);
	if (rx ? fill > wm : fill < max(wm, 1U))
		return;
	if (xchg(&f->ctl->kick, 0)) {
		atomic64_inc(&ch->kdev->doorbells);
		kshim_eventfd_signal(ch->doorbell);
	}
}

static void kshim_publish_locked(struct kshim_channel *ch,
				 const struct devemu_sqe *sqe)
{
	struct devemu_sqe *e = &ch->sqes[ch->sq_tail & (2 * ch->depth - 1)];

	memcpy(e, sqe, sizeof(*e));
	/* The entry before the index that publishes it. */
	smp_store_release(&ch->sq->tail, ++ch->sq_tail);
	atomic64_inc(&ch->kdev->requests[sqe->opcode - 1]);
}

/* Puts the request on its tag in flight; req NULL: nobody waits for it. */
static void kshim_start_locked(struct kshim_channel *ch, struct kshim_req *req,
			       const struct devemu_sqe *sqe)
{
	ch->owner[sqe->tag] = req;
	ch->op[sqe->tag] = sqe->opcode;
	__set_bit(sqe->tag, ch->inflight);
	kshim_publish_locked(ch, sqe);
}

/* A RELEASE nobody waits for: its completion frees the tag. */
static void kshim_start_release_locked(struct kshim_channel *ch, u32 tag,
				       u32 fh)
{
	struct devemu_sqe sqe = {
		.opcode = DEVEMU_OP_RELEASE,
		.tag = tag,
		.epoch = ch->epoch,
		.fh = fh,
	};

	kshim_start_locked(ch, NULL, &sqe);
}

/*
 * Gives a tag back. A closed file waiting for a tag gets it first, so that its
 * RELEASE reaches the core before any request submitted after the close.
 * Returns true when an entry was published (the doorbell is due).
 */
static bool kshim_tag_free_locked(struct kshim_channel *ch, u32 tag)
{
	struct kshim_file *kf;

	kf = list_first_entry_or_null(&ch->release_backlog, struct kshim_file,
				      backlog);
	if (kf && !ch->dead) {
		list_del(&kf->backlog);
		kshim_start_release_locked(ch, tag, kf->fh);
		kfree(kf);
		return true;
	}
	__clear_bit(tag, ch->busy);
	wake_up(&ch->tag_wq);
	return false;
}

/*
 * Takes a free tag, unless a closed file waits for one (its RELEASE goes
 * first). Returns false when there is none to take.
 */
static bool kshim_tag_pick_locked(struct kshim_channel *ch, u32 *tag)
{
	unsigned long t;

	if (!list_empty(&ch->release_backlog))
		return false;
	t = find_first_zero_bit(ch->busy, ch->depth);
	if (t >= ch->depth)
		return false;
	__set_bit(t, ch->busy);
	*tag = t;
	return true;
}

static bool kshim_tag_try(struct kshim_channel *ch, u32 *tag, int *err)
{
	struct kshim_device *kdev = ch->kdev;
	unsigned long flags;
	bool ready = true;

	spin_lock_irqsave(&kdev->lock, flags);
	if (ch->dead)
		*err = ch->dead_err;
	else if (kshim_tag_pick_locked(ch, tag))
		*err = 0;
	else
		ready = false;
	spin_unlock_irqrestore(&kdev->lock, flags);
	return ready;
}

/* Allocates a tag (and its data slot); waits interruptibly for a free one. */
int kshim_tag_get(struct kshim_channel *ch, u32 *tag)
{
	int err = 0;

	if (wait_event_interruptible(ch->tag_wq, kshim_tag_try(ch, tag, &err)))
		return -ERESTARTSYS;
	return err;
}

void kshim_tag_put(struct kshim_channel *ch, u32 tag)
{
	unsigned long flags;
	bool kick;

	spin_lock_irqsave(&ch->kdev->lock, flags);
	kick = kshim_tag_free_locked(ch, tag);
	spin_unlock_irqrestore(&ch->kdev->lock, flags);
	if (kick)
		kshim_kick(ch);
}

/*
 * Submits req on the caller's tag (req->sqe.tag) and waits for its
 * completion. On a signal it sends one CANCEL for the request (the core ends
 * a parked request with -EINTR, or with the count a write moved) and waits
 * for that completion too, which always comes: from the core, or from the
 * detach when the daemon goes away. Only a fatal signal, or a daemon that did
 * not accept DEVEMU_F_CANCEL, makes the caller abandon the request; its
 * completion (or the detach) then frees the tag.
 *
 * Returns 0 when the request completed, with req->result, req->aux and
 * req->flags (a dead channel completes everything with its error); the tag is
 * still the caller's. Returns -EINTR when the request was abandoned; the tag
 * is not the caller's any more.
 */
int kshim_call(struct kshim_channel *ch, struct kshim_req *req)
{
	struct kshim_device *kdev = ch->kdev;
	struct devemu_sqe cancel = {
		.opcode = DEVEMU_OP_CANCEL,
		.tag = req->sqe.tag,
		.fh = req->sqe.fh,
	};
	unsigned long flags;
	bool sent, done;

	spin_lock_irqsave(&kdev->lock, flags);
	if (ch->dead) {
		req->result = ch->dead_err;
		req->done = true;
		spin_unlock_irqrestore(&kdev->lock, flags);
		return 0;
	}
	req->sqe.epoch = ch->epoch;
	req->done = false;
	kshim_start_locked(ch, req, &req->sqe);
	spin_unlock_irqrestore(&kdev->lock, flags);
	kshim_kick(ch);

	if (wait_event_interruptible(req->wait, READ_ONCE(req->done))) {
		spin_lock_irqsave(&kdev->lock, flags);
		sent = !req->done && !ch->dead &&
		       (ch->features & DEVEMU_F_CANCEL);
		if (sent) {
			cancel.epoch = ch->epoch;
			kshim_publish_locked(ch, &cancel);
		}
		spin_unlock_irqrestore(&kdev->lock, flags);
		if (sent) {
			kshim_kick(ch);
			wait_event_killable(req->wait, READ_ONCE(req->done));
		}
	}

	/* Taken also when done: the completion's writes are then visible. */
	spin_lock_irqsave(&kdev->lock, flags);
	done = req->done;
	if (!done)
		ch->owner[req->sqe.tag] = NULL;
	spin_unlock_irqrestore(&kdev->lock, flags);
	return done ? 0 : -EINTR;
}

/*
 * Sends the RELEASE of a closed file without waiting for it: on a free tag
 * now, else on the next tag freed (the file waits in the backlog, owned by
 * the channel). Either way it reaches the core before any request submitted
 * after the close. Consumes kf.
 */
void kshim_release_file(struct kshim_channel *ch, struct kshim_file *kf)
{
	struct kshim_device *kdev = ch->kdev;
	unsigned long flags;
	bool kick = false;
	u32 tag;

	spin_lock_irqsave(&kdev->lock, flags);
	if (!ch->dead) {
		if (kshim_tag_pick_locked(ch, &tag)) {
			kshim_start_release_locked(ch, tag, kf->fh);
			kick = true;
		} else {
			list_add_tail(&kf->backlog, &ch->release_backlog);
			kf = NULL;
		}
	}
	spin_unlock_irqrestore(&kdev->lock, flags);
	if (kick)
		kshim_kick(ch);
	kfree(kf);
}

/*
 * Wakes the callers blocked on the per-file FIFOs (at most
 * DEVEMU_MAX_FILE_FIFOS): all of them on detach, else the interruptible
 * waiters, which look at their FIFO again.
 */
static void kshim_wake_file_fifos(struct kshim_channel *ch, bool all)
{
	u32 i;

	for (i = 0; i < ch->file_fifo_count; i++) {
		if (all)
			wake_up_all(&ch->file_rx[i].wait);
		else
			wake_up_interruptible(&ch->file_rx[i].wait);
	}
}

/*
 * Detaches the channel: NOSRV. Every request in flight completes with err at
 * once (abandoned ones free their tags), closed files waiting to be released
 * are dropped, and everybody waiting is woken. Idempotent; spinlock-only, so
 * it also runs from the irq callback.
 */
void kshim_detach_locked(struct kshim_channel *ch, int err)
{
	struct kshim_device *kdev = ch->kdev;
	struct kshim_file *kf, *next;
	struct kshim_req *req;
	unsigned int tag;

	lockdep_assert_held(&kdev->lock);
	if (ch->dead)
		return;
	WRITE_ONCE(ch->dead, true);
	ch->dead_err = err;
	if (kdev->channel == ch)
		kdev->channel = NULL;
	for_each_set_bit(tag, ch->inflight, ch->depth) {
		req = ch->owner[tag];
		ch->owner[tag] = NULL;
		if (req) {
			req->result = err;
			req->aux = 0;
			req->flags = 0;
			WRITE_ONCE(req->done, true);
			wake_up(&req->wait);
		} else {
			__clear_bit(tag, ch->busy);
		}
	}
	bitmap_zero(ch->inflight, DEVEMU_MAX_QUEUE_DEPTH);
	list_for_each_entry_safe(kf, next, &ch->release_backlog, backlog) {
		list_del(&kf->backlog);
		kfree(kf);
	}
	/* For a daemon still looking (removal, protocol error): not served. */
	WRITE_ONCE(ch->regs->status, DEVEMU_STATUS_NOSRV);
	wake_up_all(&ch->tag_wq);
	wake_up_all(&ch->rx.wait);
	wake_up_all(&ch->tx.wait);
	kshim_wake_file_fifos(ch, true);
	wake_up_interruptible_poll(&ch->hup_wq, EPOLLHUP | EPOLLERR);
	kshim_wake_files_locked(kdev, NULL);
}

/*
 * Wakes the pollers of open files. With ch: those of ch's epoch whose shadow
 * registers changed since their last wake-up (every one without the shadow
 * feature), so that EPOLLET sees a file's own events only, as on CUSE.
 * Without ch: all of them (detach, removal).
 */
void kshim_wake_files_locked(struct kshim_device *kdev,
			     struct kshim_channel *ch)
{
	struct kshim_file *kf;
	u32 seq;

	lockdep_assert_held(&kdev->lock);
	list_for_each_entry(kf, &kdev->files, node) {
		if (ch && kf->epoch != ch->epoch)
			continue;
		if (ch && (ch->features & DEVEMU_F_SHADOW_POLL)) {
			seq = READ_ONCE(ch->files[kf->fh].seq);
			if (seq == kf->shadow_seq)
				continue;
			kf->shadow_seq = seq;
		}
		wake_up_interruptible_poll(&kf->poll_wq, KSHIM_POLL_MASK);
	}
}

/* Wakes the pollers of every open file of ch's epoch (the FIFOs moved). */
static void kshim_wake_stream_files_locked(struct kshim_device *kdev,
					   struct kshim_channel *ch)
{
	struct kshim_file *kf;

	lockdep_assert_held(&kdev->lock);
	list_for_each_entry(kf, &kdev->files, node) {
		if (kf->epoch != ch->epoch)
			continue;
		kf->shadow_seq = READ_ONCE(ch->files[kf->fh].seq);
		wake_up_interruptible_poll(&kf->poll_wq, KSHIM_POLL_MASK);
	}
}

/* The same from a caller's read or write of a loop (process context). */
void kshim_wake_stream_files(struct kshim_channel *ch)
{
	struct kshim_device *kdev = ch->kdev;
	unsigned long flags;

	spin_lock_irqsave(&kdev->lock, flags);
	if (!ch->dead)
		kshim_wake_stream_files_locked(kdev, ch);
	spin_unlock_irqrestore(&kdev->lock, flags);
}

/*
 * One completion entry, copied out of the window. Returns true if the doorbell
 * is due.
 */
static bool kshim_complete_locked(struct kshim_channel *ch,
				  const struct devemu_cqe *cqe)
{
	struct kshim_device *kdev = ch->kdev;
	struct kshim_req *req;
	u32 tag = cqe->tag;

	if (tag >= ch->depth) {
		kshim_protocol_error(kdev, "completion tag out of range");
		return false;
	}
	if (!test_bit(tag, ch->inflight) || cqe->epoch != (u16)ch->epoch) {
		/* Not in flight (a duplicate, never submitted) or stale. */
		atomic64_inc(&kdev->stale_completions);
		return false;
	}
	__clear_bit(tag, ch->inflight);
	req = ch->owner[tag];
	ch->owner[tag] = NULL;
	if (req) {
		/* The caller checks result and aux against its request. */
		req->result = cqe->result;
		req->aux = cqe->aux;
		req->flags = cqe->flags;
		WRITE_ONCE(req->done, true);
		wake_up(&req->wait);
		return false;
	}
	/* Abandoned by its caller. A file it opened anyway is released. */
	if (ch->op[tag] == DEVEMU_OP_OPEN && cqe->result >= 0 &&
	    cqe->result < DEVEMU_MAX_FILES) {
		kshim_start_release_locked(ch, tag, cqe->result);
		return true;
	}
	return kshim_tag_free_locked(ch, tag);
}

/* The interrupt handler: runs in the irq eventfd's wake-up, atomic context. */
static void kshim_interrupt(struct kshim_channel *ch)
{
	struct kshim_device *kdev = ch->kdev;
	const struct devemu_cqe *e;
	struct devemu_cqe cqe;
	unsigned long flags;
	u32 adjust, discard;
	bool kick = false;
	bool wake = true;
	u32 isr = 0;
	u32 tail;

	spin_lock_irqsave(&kdev->lock, flags);
	if (ch->dead)
		goto out_unlock;
	isr = xchg(&ch->regs->isr, 0);
	/* The tail before the entries it publishes (the core's release). */
	tail = smp_load_acquire(&ch->cq->tail);
	if (tail - ch->cq_head > ch->depth) {
		/* The core never has more than depth completions pending. */
		kshim_protocol_error(kdev,
				     "completion tail runs past the ring");
		kshim_detach_locked(ch, -EIO);
		goto out_unlock;
	}
	while (ch->cq_head != tail) {
		e = &ch->cqes[ch->cq_head & (ch->depth - 1)];
		cqe.tag = READ_ONCE(e->tag);
		cqe.result = READ_ONCE(e->result);
		cqe.aux = READ_ONCE(e->aux);
		cqe.epoch = READ_ONCE(e->epoch);
		cqe.flags = READ_ONCE(e->flags);
		ch->cq_head++;
		kick |= kshim_complete_locked(ch, &cqe);
	}
	/* The entries are read before the core may reuse them. */
	smp_store_release(&ch->cq->head, ch->cq_head);
	if (isr & DEVEMU_ISR_STREAM) {
		wake_up_interruptible(&ch->rx.wait);
		wake_up_interruptible(&ch->tx.wait);
		kshim_wake_file_fifos(ch, false);
		/*
		 * FIFO readiness is not in the shadow: wake every file's
		 * pollers. A loop's readiness moves with the callers' own
		 * reads and writes (they wake the pollers) and with adjust
		 * and discard only, so an edge-triggered poller sees one event
		 * per arrival. Per-file FIFOs are no loops: they always wake.
		 * Without a loop rx may not exist (a channel with per-file
		 * FIFOs only, or a daemon raising the bit for nothing).
		 */
		if (ch->loop_capacity) {
			adjust = READ_ONCE(ch->rx.ctl->adjust);
			discard = READ_ONCE(ch->rx.ctl->discard);
			wake = ch->file_fifo_count || adjust != ch->irq_adjust ||
			       discard != ch->irq_discard;
			ch->irq_adjust = adjust;
			ch->irq_discard = discard;
		}
		if (wake)
			kshim_wake_stream_files_locked(kdev, ch);
	} else if (isr & DEVEMU_ISR_SHADOW) {
		kshim_wake_files_locked(kdev, ch);
	}
out_unlock:
	spin_unlock_irqrestore(&kdev->lock, flags);
	if (kick)
		schedule_work(&ch->kick_work);
}

/*
 * Called with the irq eventfd's wait-queue lock held, interrupts disabled:
 * spinlocks only, no sleeping, and no eventfd_signal() (it would recurse).
 */
static int kshim_irq_wakeup(wait_queue_entry_t *wait, unsigned int mode,
			    int sync, void *key)
{
	struct kshim_channel *ch = container_of(wait, struct kshim_channel,
						irq_wait);
	__poll_t events = key_to_poll(key);
	unsigned long flags;
	u64 count;

	if (events & EPOLLIN) {
		/* Acknowledge the edge, then look at the ring. */
		eventfd_ctx_do_read(ch->irq, &count);
		kshim_interrupt(ch);
	}
	if (events & EPOLLHUP) {
		/*
		 * The daemon closed the irq eventfd: nobody can raise the
		 * interrupt any more. Detach; the entry stays hooked (we hold
		 * a reference to the eventfd context) until the channel file
		 * is released and kshim_channel_shutdown() unhooks it.
		 */
		spin_lock_irqsave(&ch->kdev->lock, flags);
		kshim_detach_locked(ch, -EIO);
		spin_unlock_irqrestore(&ch->kdev->lock, flags);
	}
	return 0;
}

static void kshim_irq_queue(struct file *file, wait_queue_head_t *wqh,
			    poll_table *pt)
{
	struct kshim_channel *ch = container_of(pt, struct kshim_channel,
						irq_pt);

	if (ch->irq_hooked)
		return;
	ch->irq_hooked = true;
	add_wait_queue(wqh, &ch->irq_wait);
}

static void kshim_window_init(struct kshim_channel *ch, const char *name,
			      const struct kshim_layout *l)
{
	struct devemu_regs *regs = ch->window;
	struct kshim_fifo *f;
	u32 i;

	BUILD_BUG_ON(sizeof(struct devemu_regs) != DEVEMU_WINDOW_PAGE);
	BUILD_BUG_ON(sizeof(struct devemu_shadow) != DEVEMU_WINDOW_PAGE);
	BUILD_BUG_ON(sizeof(struct devemu_shadow_file) != 16);
	BUILD_BUG_ON(sizeof(struct devemu_ring) != DEVEMU_RING_ENTRIES_OFFSET);
	BUILD_BUG_ON(sizeof(struct devemu_sqe) != 64);
	BUILD_BUG_ON(sizeof(struct devemu_cqe) != 16);
	BUILD_BUG_ON(sizeof(struct devemu_fifo) != 192);
	BUILD_BUG_ON(2 * DEVEMU_FIFO_CTRL_SIZE > DEVEMU_WINDOW_PAGE);
	BUILD_BUG_ON(DEVEMU_FILES_OFFSET + DEVEMU_MAX_FILES *
		     sizeof(struct devemu_shadow_file) != DEVEMU_RINGS_OFFSET);

	ch->regs = regs;
	ch->shadow = ch->window + DEVEMU_SHADOW_OFFSET;
	ch->files = ch->window + DEVEMU_FILES_OFFSET;
	ch->sq = ch->window + l->sq;
	ch->cq = ch->window + l->cq;
	ch->sqes = ch->window + l->sq + DEVEMU_RING_ENTRIES_OFFSET;
	ch->cqes = ch->window + l->cq + DEVEMU_RING_ENTRIES_OFFSET;
	ch->data = ch->window + l->data;
	if (l->fifo) {
		ch->rx.ctl = ch->window + l->fifo;
		ch->tx.ctl = ch->window + l->fifo + DEVEMU_FIFO_CTRL_SIZE;
		ch->rx.data = ch->window + l->fifo + DEVEMU_WINDOW_PAGE;
		ch->tx.data = ch->rx.data + ch->rx.size;
		ch->rx.ctl->capacity = ch->loop_capacity;
	}
	/* Control block N, then (page-aligned) ring N, for fh N. */
	for (i = 0; i < ch->file_fifo_count; i++) {
		f = &ch->file_rx[i];
		f->ctl = ch->window + l->file_fifo +
			 (size_t)i * DEVEMU_FIFO_CTRL_SIZE;
		f->data = ch->window + l->file_fifo +
			  devemu_window_file_fifo_data(ch->file_fifo_count) +
			  (size_t)i * f->size;
	}

	/* Not shared yet: plain stores. */
	regs->magic = DEVEMU_MAGIC;
	regs->abi_version = DEVEMU_ABI_VERSION;
	regs->device_id = atomic_inc_return(&kshim_window_ids);
	regs->queue_depth = ch->depth;
	regs->slot_size = ch->slot_size;
	regs->max_files = DEVEMU_MAX_FILES;
	regs->window_size = l->size;
	regs->sq_offset = l->sq;
	regs->cq_offset = l->cq;
	regs->data_offset = l->data;
	regs->rx_fifo_size = ch->rx.size;
	regs->tx_fifo_size = ch->tx.size;
	regs->fifo_offset = l->fifo;
	regs->file_fifo_count = ch->file_fifo_count;
	regs->file_fifo_size = ch->file_fifo_count ? ch->file_rx[0].size : 0;
	regs->file_fifo_offset = l->file_fifo;
	regs->features_offered = DEVEMU_KSHIM_FEATURES;
	regs->attach_epoch = ch->epoch;
	strscpy(regs->name, name, sizeof(regs->name));
	/* Until the core says otherwise, each submission rings the doorbell. */
	ch->sq->flags = DEVEMU_RING_NEED_KICK;
}

/*
 * A channel for kdev in the given attach epoch, with a fresh window, hooked to
 * the daemon's irq eventfd. The caller has validated add.
 */
struct kshim_channel *kshim_channel_create(struct kshim_device *kdev,
					   const struct devemu_kshim_add *add,
					   u32 epoch)
{
	struct kshim_layout l;
	struct kshim_channel *ch;
	struct file *irq_file;
	u32 file_size = 0;
	int ret;
	u32 i;

	ch = kzalloc(sizeof(*ch), GFP_KERNEL);
	if (!ch)
		return ERR_PTR(-ENOMEM);
	kref_init(&ch->ref);
	INIT_WORK(&ch->kick_work, kshim_kick_work);
	init_waitqueue_head(&ch->tag_wq);
	init_waitqueue_head(&ch->hup_wq);
	INIT_LIST_HEAD(&ch->release_backlog);
	ch->epoch = epoch;
	ch->depth = add->queue_depth;
	ch->slot_size = add->slot_size;
	ch->features = add->features;
	mutex_init(&ch->rx.lock);
	mutex_init(&ch->tx.lock);
	init_waitqueue_head(&ch->rx.wait);
	init_waitqueue_head(&ch->tx.wait);
	spin_lock_init(&ch->rx.waiters_lock);
	spin_lock_init(&ch->tx.waiters_lock);
	if (ch->features & DEVEMU_F_STREAM) {
		ch->rx.size = add->rx_fifo_size;
		ch->tx.size = add->tx_fifo_size;
		ch->loop_capacity = add->stream_capacity;
	}
	if ((ch->features & DEVEMU_F_FILE_STREAM) && add->file_fifo_count) {
		ch->file_rx = kcalloc(add->file_fifo_count,
				      sizeof(*ch->file_rx), GFP_KERNEL);
		if (!ch->file_rx) {
			kfree(ch);
			return ERR_PTR(-ENOMEM);
		}
		ch->file_fifo_count = add->file_fifo_count;
		file_size = add->file_fifo_size;
		for (i = 0; i < ch->file_fifo_count; i++) {
			mutex_init(&ch->file_rx[i].lock);
			init_waitqueue_head(&ch->file_rx[i].wait);
			spin_lock_init(&ch->file_rx[i].waiters_lock);
			ch->file_rx[i].size = file_size;
		}
	}

	ch->doorbell = eventfd_ctx_fdget(add->doorbell_fd);
	if (IS_ERR(ch->doorbell)) {
		ret = PTR_ERR(ch->doorbell);
		goto err_free;
	}
	irq_file = fget(add->irq_fd);
	if (!irq_file) {
		ret = -EBADF;
		goto err_put_doorbell;
	}
	ch->irq = eventfd_ctx_fileget(irq_file);
	if (IS_ERR(ch->irq)) {
		ret = PTR_ERR(ch->irq);
		goto err_fput_irq;
	}
	ret = -EINVAL;
	if (ch->irq == ch->doorbell)
		goto err_put_irq;

	kshim_layout_of(ch->depth, ch->slot_size, ch->rx.size, ch->tx.size,
			ch->file_fifo_count, file_size, &l);
	ch->window = vmalloc_user(l.size);
	if (!ch->window) {
		ret = -ENOMEM;
		goto err_put_irq;
	}
	ch->window_size = l.size;
	kshim_window_init(ch, kdev->name, &l);

	ch->pid_ns = get_pid_ns(task_active_pid_ns(current));
	get_device(&kdev->dev);
	ch->kdev = kdev;

	/* From here on the interrupt can fire; the channel is complete. */
	init_waitqueue_func_entry(&ch->irq_wait, kshim_irq_wakeup);
	init_poll_funcptr(&ch->irq_pt, kshim_irq_queue);
	vfs_poll(irq_file, &ch->irq_pt);
	fput(irq_file);
	if (!ch->irq_hooked) {
		kshim_channel_put(ch);
		return ERR_PTR(-EINVAL);
	}
	return ch;

err_put_irq:
	eventfd_ctx_put(ch->irq);
err_fput_irq:
	fput(irq_file);
err_put_doorbell:
	eventfd_ctx_put(ch->doorbell);
err_free:
	kfree(ch->file_rx);
	kfree(ch);
	return ERR_PTR(ret);
}

static void kshim_channel_free(struct kref *ref)
{
	struct kshim_channel *ch = container_of(ref, struct kshim_channel, ref);

	vfree(ch->window);
	eventfd_ctx_put(ch->irq);
	eventfd_ctx_put(ch->doorbell);
	put_pid_ns(ch->pid_ns);
	put_device(&ch->kdev->dev);
	kfree(ch->file_rx);
	kfree(ch);
}

void kshim_channel_put(struct kshim_channel *ch)
{
	kref_put(&ch->ref, kshim_channel_free);
}

/* The serving channel of kdev, with a reference; NULL when it has none. */
struct kshim_channel *kshim_channel_get(struct kshim_device *kdev)
{
	struct kshim_channel *ch;
	unsigned long flags;

	spin_lock_irqsave(&kdev->lock, flags);
	ch = kdev->removed ? NULL : kdev->channel;
	if (ch)
		kref_get(&ch->ref);
	spin_unlock_irqrestore(&kdev->lock, flags);
	return ch;
}

/*
 * The end of the channel file (or of a channel never installed): detach,
 * unhook, drop.
 */
void kshim_channel_shutdown(struct kshim_channel *ch)
{
	unsigned long flags;
	u64 count;

	spin_lock_irqsave(&ch->kdev->lock, flags);
	kshim_detach_locked(ch, -EIO);
	spin_unlock_irqrestore(&ch->kdev->lock, flags);
	/* Under the eventfd's lock: the callback is done, never runs again, */
	eventfd_ctx_remove_wait_queue(ch->irq, &ch->irq_wait, &count);
	/* so nothing queues the doorbell work any more. */
	cancel_work_sync(&ch->kick_work);
	kshim_channel_put(ch);
}

/*
 * Copies n words of a shadow block under its seqlock. The daemon may never
 * let it settle: after KSHIM_SEQLOCK_TRIES the last words read stand.
 */
static void kshim_seqlock_read(const u32 *seqp, const u32 *from, u32 *to,
			       unsigned int n)
{
	unsigned int i;
	int try;
	u32 seq;

	for (try = 0; try < KSHIM_SEQLOCK_TRIES; try++) {
		/* seq before the words, the words before seq again. */
		seq = smp_load_acquire(seqp);
		for (i = 0; i < n; i++)
			to[i] = READ_ONCE(from[i]);
		smp_rmb(); /* pairs with the writer's release fence */
		if (!(seq & 1) && READ_ONCE(*seqp) == seq)
			break;
		cpu_relax();
	}
}

/* The per-file shadow registers: poll readiness, and bytes readable. */
__poll_t kshim_shadow_read(struct kshim_channel *ch, u32 fh, u32 *readable)
{
	const struct devemu_shadow_file *s = &ch->files[fh];
	u32 v[2];	/* revents, readable */

	BUILD_BUG_ON(offsetof(struct devemu_shadow_file, readable) !=
		     offsetof(struct devemu_shadow_file, revents) + sizeof(u32));
	kshim_seqlock_read(&s->seq, &s->revents, v, ARRAY_SIZE(v));
	if (readable)
		*readable = v[1];
	return demangle_poll((u16)v[0]) & KSHIM_POLL_MASK;
}

/* The device-wide shadow: the status words the model publishes. */
void kshim_status_read(struct kshim_channel *ch,
		       u32 words[DEVEMU_STATUS_WORDS])
{
	kshim_seqlock_read(&ch->shadow->seq, ch->shadow->status, words,
			   DEVEMU_STATUS_WORDS);
}

static int kshim_channel_release(struct inode *inode, struct file *file)
{
	kshim_channel_shutdown(file->private_data);
	return 0;
}

static int kshim_channel_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct kshim_channel *ch = file->private_data;

	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	return remap_vmalloc_range(vma, ch->window, vma->vm_pgoff);
}

/* EPOLLHUP once detached (removal, protocol error, irq eventfd closed). */
static __poll_t kshim_channel_poll(struct file *file, poll_table *pt)
{
	struct kshim_channel *ch = file->private_data;

	poll_wait(file, &ch->hup_wq, pt);
	return READ_ONCE(ch->dead) ? EPOLLHUP | EPOLLERR : 0;
}

const struct file_operations kshim_channel_fops = {
	.owner = THIS_MODULE,
	.release = kshim_channel_release,
	.mmap = kshim_channel_mmap,
	.poll = kshim_channel_poll,
	.llseek = noop_llseek,
};
