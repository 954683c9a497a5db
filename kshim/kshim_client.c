// SPDX-License-Identifier: GPL-2.0
/*
 * devemu_kshim: the client nodes /dev/NAME. Each file operation becomes a
 * request in the device window, the same for every device model: open, read,
 * write, ioctl (with retry rounds for arguments that hold pointers) and
 * release; poll and FIONREAD are answered from the shadow registers.
 *
 * Files and epochs: a file belongs to the attach epoch it was opened in, and
 * its state lives in that daemon. When the daemon goes away (NOSRV), and in
 * every later epoch, each operation on the file except release fails with
 * -EIO, and poll reports EPOLLERR | EPOLLHUP. Once the device is removed they
 * fail with -ENODEV. New opens of a device without a daemon fail with -ENODEV.
 */
#include <linux/capability.h>
#include <linux/compat.h>
#include <linux/cred.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/overflow.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uidgid.h>
#include <asm/ioctls.h>

#include "kshim.h"

/* Retry rounds an ioctl may take before the daemon is considered broken. */
#define KSHIM_IOCTL_ROUNDS 16

/*
 * The channel serving the file's epoch, with a reference. -ENODEV once the
 * device is removed, -EIO when the file's daemon is gone.
 */
static struct kshim_channel *kshim_file_channel(struct kshim_file *kf)
{
	struct kshim_device *kdev = kf->kdev;
	struct kshim_channel *ch;
	unsigned long flags;

	spin_lock_irqsave(&kdev->lock, flags);
	ch = kdev->channel;
	if (kdev->removed)
		ch = ERR_PTR(-ENODEV);
	else if (!ch || ch->epoch != kf->epoch)
		ch = ERR_PTR(-EIO);
	else
		kref_get(&ch->ref);
	spin_unlock_irqrestore(&kdev->lock, flags);
	return ch;
}

/*
 * The caller's capabilities as capable() sees them before any LSM: its
 * effective set if it runs in the initial user namespace, none otherwise (a
 * capability held in a child namespace never reaches the initial one). Bit N
 * is capability N.
 */
static u64 kshim_caller_caps(void)
{
	const struct cred *cred = current_cred();
	u64 caps = 0;
	int cap;

	if (cred->user_ns != &init_user_ns)
		return 0;
	for (cap = 0; cap <= CAP_LAST_CAP && cap < 64; cap++)
		if (cap_raised(cred->cap_effective, cap))
			caps |= 1ULL << cap;
	return caps;
}

static void kshim_req_init(struct kshim_req *req, struct kshim_channel *ch,
			   struct file *file, u8 opcode, u32 tag, u32 fh)
{
	memset(req, 0, sizeof(*req));
	init_waitqueue_head(&req->wait);
	req->sqe.opcode = opcode;
	req->sqe.tag = tag;
	req->sqe.fh = fh;
	req->sqe.open_flags = file->f_flags;
	if (file->f_flags & O_NONBLOCK)
		req->sqe.flags = DEVEMU_SQE_F_NONBLOCK;
	/* A 32-bit caller: its structures have the 32-bit layout. */
	if (in_compat_syscall())
		req->sqe.flags |= DEVEMU_SQE_F_COMPAT;
	/* The caller as the daemon sees it (CAP_SYS_ADMIN: initial user ns). */
	req->sqe.pid = task_tgid_nr_ns(current, ch->pid_ns);
	req->sqe.uid = from_kuid_munged(&init_user_ns, current_fsuid());
	req->sqe.gid = from_kgid_munged(&init_user_ns, current_fsgid());
	if (ch->features & DEVEMU_F_CALLER_CAPS) {
		req->sqe.flags |= DEVEMU_SQE_F_CAPS;
		req->sqe.caps = kshim_caller_caps();
	}
}

/* A daemon's errno if a caller may see it (not kernel-internal), else -EIO. */
static int kshim_errno(struct kshim_device *kdev, s32 result)
{
	if (result < 0 && result > -ERESTARTSYS)
		return result;
	kshim_protocol_error(kdev, "invalid error code");
	return -EIO;
}

static int kshim_open(struct inode *inode, struct file *file)
{
	struct kshim_device *kdev = container_of(inode->i_cdev,
						 struct kshim_device, cdev);
	struct kshim_channel *ch;
	struct kshim_file *kf;
	struct kshim_req req;
	unsigned long flags;
	u32 tag;
	int ret;

	kf = kzalloc(sizeof(*kf), GFP_KERNEL);
	if (!kf)
		return -ENOMEM;
	kf->kdev = kdev;
	INIT_LIST_HEAD(&kf->backlog);
	init_waitqueue_head(&kf->poll_wq);

	ch = kshim_channel_get(kdev);
	ret = -ENODEV;
	if (!ch)
		goto err_free_file;
	kf->epoch = ch->epoch;

	ret = kshim_tag_get(ch, &tag);
	if (ret)
		goto err_put_channel;
	kshim_req_init(&req, ch, file, DEVEMU_OP_OPEN, tag, 0);
	if (kshim_call(ch, &req)) {
		/* Abandoned: if the core opens it anyway, it is released. */
		ret = -EINTR;
		goto err_put_channel;
	}
	kshim_tag_put(ch, tag);
	if (req.result < 0) {
		ret = kshim_errno(kdev, req.result);
		goto err_put_channel;
	}
	if (req.result >= DEVEMU_MAX_FILES) {
		kshim_protocol_error(kdev, "file handle out of range");
		ret = -EIO;
		goto err_put_channel;
	}
	kf->fh = req.result;
	spin_lock_irqsave(&kdev->lock, flags);
	kf->shadow_seq = READ_ONCE(ch->files[kf->fh].seq);
	list_add_tail(&kf->node, &kdev->files);
	spin_unlock_irqrestore(&kdev->lock, flags);
	kshim_channel_put(ch);

	get_device(&kdev->dev);
	file->private_data = kf;
	/* A stream: lseek, pread and pwrite fail with -ESPIPE. */
	return stream_open(inode, file);

err_put_channel:
	kshim_channel_put(ch);
err_free_file:
	kfree(kf);
	return ret;
}

/*
 * No waiting: the RELEASE is queued for the core (see kshim_release_file).
 * A file of a daemon that is gone has nothing left to release.
 */
static int kshim_release(struct inode *inode, struct file *file)
{
	struct kshim_file *kf = file->private_data;
	struct kshim_device *kdev = kf->kdev;
	struct kshim_channel *ch;
	unsigned long flags;

	spin_lock_irqsave(&kdev->lock, flags);
	list_del(&kf->node);
	spin_unlock_irqrestore(&kdev->lock, flags);
	ch = kshim_file_channel(kf);
	if (IS_ERR(ch)) {
		kfree(kf);
	} else {
		kshim_release_file(ch, kf);
		kshim_channel_put(ch);
	}
	put_device(&kdev->dev);
	return 0;
}

/*
 * The fill of a FIFO: the core's index read once, checked against the size.
 * A daemon that moves its index outside [module index - size, module index +
 * size] broke the protocol: the channel is detached. Returns the fill, or
 * -EIO. Called with f->lock held.
 */
static long kshim_fifo_fill(struct kshim_channel *ch, struct kshim_fifo *f,
			    bool rx)
{
	struct kshim_device *kdev = ch->kdev;
	unsigned long flags;
	u32 fill;

	if (rx)	/* the tail before the bytes it publishes */
		fill = smp_load_acquire(&f->ctl->tail) - f->index;
	else	/* the head after the bytes it gave back were read */
		fill = f->index - smp_load_acquire(&f->ctl->head);
	if (fill <= f->size)
		return fill;
	kshim_protocol_error(kdev, rx ? "receive FIFO tail out of range" :
				   "transmit FIFO head out of range");
	spin_lock_irqsave(&kdev->lock, flags);
	kshim_detach_locked(ch, -EIO);
	spin_unlock_irqrestore(&kdev->lock, flags);
	return -EIO;
}

/*
 * What a FIFO call gets once the channel is dead: the detach's error, as a
 * request waiting then is answered with it: -EIO when the daemon went away or
 * broke the protocol, -ENODEV when the device was removed. Read under the lock
 * that wrote it (after ch->dead, which the caller saw first).
 */
static int kshim_fifo_dead_err(struct kshim_channel *ch)
{
	unsigned long flags;
	int err;

	spin_lock_irqsave(&ch->kdev->lock, flags);
	err = ch->dead_err;
	spin_unlock_irqrestore(&ch->kdev->lock, flags);
	return err ?: -EIO;
}

/* The model's record size for a FIFO, clamped to [1, size]. */
static u32 kshim_fifo_record(struct kshim_fifo *f)
{
	return clamp_t(u32, READ_ONCE(f->ctl->record), 1, f->size);
}

/*
 * What kshim_fifo_read/kshim_fifo_write return when the core diverted the
 * direction meanwhile: the call goes on as requests. Never leaves the module.
 */
#define KSHIM_FIFO_DIVERTED (-EREMCHG)

/* Whether the core diverts a FIFO's calls to requests (uapi: Diverted). */
static bool kshim_fifo_diverted(struct kshim_fifo *f)
{
	return READ_ONCE(f->ctl->divert);
}

/* Whether a call goes to the FIFO: the direction has one, not diverted. */
static bool kshim_fifo_serves(struct kshim_fifo *f)
{
	return f->size && !kshim_fifo_diverted(f);
}

/*
 * The counts the core reports in its statistics (uapi: Diverted). A call
 * served from the FIFO: under f->lock, which every such call holds.
 */
static void kshim_fifo_count_call(struct kshim_fifo *f)
{
	f->calls++;
	WRITE_ONCE(f->ctl->calls, f->calls);
}

/*
 * A caller starting (+1) or ending (-1) a wait, outside f->lock: published
 * under a spinlock so the copy in the window is never left behind a later
 * change.
 */
static void kshim_fifo_count_waiter(struct kshim_fifo *f, int waiters)
{
	unsigned long flags;

	spin_lock_irqsave(&f->waiters_lock, flags);
	f->waiters += waiters;
	WRITE_ONCE(f->ctl->waiters, f->waiters);
	spin_unlock_irqrestore(&f->waiters_lock, flags);
}

/*
 * Copies n bytes between the caller and the FIFO's bytes at index, in at most
 * two pieces (the ring wraps). Returns the bytes not copied.
 */
static size_t kshim_fifo_copy(struct kshim_fifo *f, u32 index, void __user *ubuf,
			      size_t n, bool to_user)
{
	u32 off = index & (f->size - 1);
	size_t first = min_t(size_t, n, f->size - off);
	size_t left;

	if (to_user) {
		left = copy_to_user(ubuf, f->data + off, first);
		if (!left && n > first)
			left = copy_to_user(ubuf + first, f->data, n - first);
		else if (left)
			left += n - first;
	} else {
		left = copy_from_user(f->data + off, ubuf, first);
		if (!left && n > first)
			left = copy_from_user(f->data, ubuf + first, n - first);
		else if (left)
			left += n - first;
	}
	return left;
}

/*
 * A receive FIFO's head as a caller sees it (the device-wide one or a
 * file's): a discard by the core (a new discard: a flush, or bytes a request
 * took back) moves it forward to the discard index, when that lies between
 * the head and the tail. Without the lock, for readiness.
 */
static u32 kshim_rx_head(struct kshim_fifo *f)
{
	u32 index = READ_ONCE(f->index);
	u32 discard = READ_ONCE(f->ctl->discard);

	if (discard != READ_ONCE(f->discard) &&
	    discard - index <= smp_load_acquire(&f->ctl->tail) - index)
		return discard;
	return index;
}

/* Acts on the core's discard: drops the bytes before its index. Under f->lock. */
static void kshim_rx_discard(struct kshim_fifo *f)
{
	u32 head = kshim_rx_head(f);

	WRITE_ONCE(f->discard, READ_ONCE(f->ctl->discard));
	if (head != f->index) {
		smp_store_release(&f->ctl->head, head);
		WRITE_ONCE(f->index, head);
	}
}

/*
 * A loop's bytes in flight (uapi: Loops): written by our callers and not yet
 * read by them, corrected by the core's adjust; clamped to the capacity, so a
 * daemon's adjust moves nothing but readiness.
 */
static u32 kshim_loop_fill(struct kshim_channel *ch)
{
	s32 fill = (s32)(READ_ONCE(ch->tx.index) - kshim_rx_head(&ch->rx) +
			 READ_ONCE(ch->rx.ctl->adjust));

	return clamp_t(s32, fill, 0, ch->loop_capacity);
}

/* Room for a write: the tx FIFO's, and a loop's below its capacity. */
static u32 kshim_fifo_room(struct kshim_channel *ch, u32 fill)
{
	u32 room = ch->tx.size - fill;

	if (ch->loop_capacity)
		room = min(room, ch->loop_capacity - kshim_loop_fill(ch));
	return room;
}

/*
 * A loop's capacity if f is its receive FIFO, else 0: the loop logic (bytes
 * in flight, adjust, the writers' room) is the device-wide rx's alone.
 */
static u32 kshim_rx_loop(struct kshim_channel *ch, struct kshim_fifo *f)
{
	return f == &ch->rx ? ch->loop_capacity : 0;
}

/*
 * The fill a read of count bytes from f waits for: a record; in a loop, every
 * byte in flight up to count (as much as rx holds), so that a read right
 * after a write returns what a pipe's would.
 */
static u32 kshim_read_want(struct kshim_channel *ch, struct kshim_fifo *f,
			   size_t count, u32 record)
{
	u32 want;

	if (!kshim_rx_loop(ch, f))
		return record;
	want = min_t(size_t, count, min(kshim_loop_fill(ch), ch->rx.size));
	want -= want % record;
	return max(want, record);
}

/* Whether a caller waiting to read count bytes from f may go on. */
static bool kshim_fifo_readable(struct kshim_channel *ch, struct kshim_fifo *f,
				size_t count, u32 record, bool nonblock)
{
	u32 fill;

	if (READ_ONCE(ch->dead) || kshim_fifo_diverted(f) ||
	    (f == &ch->rx && READ_ONCE(f->ctl->nowait)))
		return true;
	/* O_NONBLOCK waits only for a loop's bytes in flight; they may be gone. */
	if (nonblock && (!kshim_rx_loop(ch, f) || kshim_loop_fill(ch) < record))
		return true;
	fill = READ_ONCE(f->ctl->tail) - kshim_rx_head(f);
	/* Out of range counts as ready: the caller then finds the error. */
	return fill > f->size || fill >= kshim_read_want(ch, f, count, record);
}

/* Whether a caller waiting for room for need bytes may go on. */
static bool kshim_fifo_writable(struct kshim_channel *ch, u32 need)
{
	struct kshim_fifo *f = &ch->tx;
	u32 fill;

	if (READ_ONCE(ch->dead) || kshim_fifo_diverted(f))
		return true;
	fill = READ_ONCE(f->index) - READ_ONCE(f->ctl->head);
	return fill > f->size || kshim_fifo_room(ch, fill) >= need;
}

/*
 * read() from a receive FIFO (the device-wide one, or the file's own): whole
 * records, straight from the window, no request. Blocks in the kernel while
 * it is empty (the core's interrupt wakes the caller); O_NONBLOCK gives
 * -EAGAIN; a signal -EINTR, with nothing to cancel. A loop's read first waits
 * for the bytes in flight (up to count) to reach rx, even O_NONBLOCK, and
 * gives back their room to writers. When the core diverts reads meanwhile:
 * KSHIM_FIFO_DIVERTED, nothing read.
 */
static ssize_t kshim_fifo_read(struct kshim_channel *ch, struct kshim_fifo *f,
			       struct file *file, char __user *buf,
			       size_t count)
{
	u32 record = kshim_fifo_record(f);
	u32 loop = kshim_rx_loop(ch, f);
	bool nonblock = file->f_flags & O_NONBLOCK;
	bool was_full = false;
	long fill;
	size_t n;
	int ret;

	if (count < record)
		return -EINVAL;
	for (;;) {
		if (mutex_lock_interruptible(&f->lock))
			return -EINTR;
		if (READ_ONCE(ch->dead)) {
			mutex_unlock(&f->lock);
			return kshim_fifo_dead_err(ch);
		}
		if (kshim_fifo_diverted(f)) {
			mutex_unlock(&f->lock);
			return KSHIM_FIFO_DIVERTED;
		}
		kshim_rx_discard(f);
		fill = kshim_fifo_fill(ch, f, true);
		if (fill < 0) {
			mutex_unlock(&f->lock);
			return fill;
		}
		if (fill >= kshim_read_want(ch, f, count, record))
			break;
		/*
		 * A polling read (uapi: nowait; the device-wide rx's, not a
		 * loop's) takes what is there: nothing.
		 */
		if (f == &ch->rx && !loop && READ_ONCE(f->ctl->nowait)) {
			kshim_fifo_count_call(f);
			mutex_unlock(&f->lock);
			kshim_fifo_kick(ch, f, fill, true);
			return 0;
		}
		mutex_unlock(&f->lock);
		/* Empty (fill 0 is below every watermark): ask for a refill. */
		kshim_fifo_kick(ch, f, fill, true);
		/* O_NONBLOCK: -EAGAIN unless a loop has bytes on their way to rx. */
		if (nonblock && (!loop || kshim_loop_fill(ch) < record))
			return -EAGAIN;
		kshim_fifo_count_waiter(f, 1);
		ret = wait_event_interruptible(f->wait,
					       kshim_fifo_readable(ch, f, count,
								   record,
								   nonblock));
		kshim_fifo_count_waiter(f, -1);
		if (ret)
			return -EINTR;
	}
	n = min_t(size_t, count, fill);
	n -= n % record;
	if (kshim_fifo_copy(f, f->index, buf, n, true)) {
		mutex_unlock(&f->lock);
		return -EFAULT;
	}
	if (loop)
		was_full = loop - kshim_loop_fill(ch) < record;
	/* The bytes are read before the core may overwrite them. */
	smp_store_release(&f->ctl->head, f->index + n);
	WRITE_ONCE(f->index, f->index + n);
	kshim_fifo_count_call(f);
	mutex_unlock(&f->lock);
	kshim_fifo_kick(ch, f, fill - n, true);
	if (loop) {
		/* A loop's room is ours to give: wake writers, and pollers on POLLOUT. */
		wake_up_interruptible(&ch->tx.wait);
		if (was_full)
			kshim_wake_stream_files(ch);
	}
	return n;
}

/*
 * write() into the transmit FIFO: posted, the call returns once the bytes are
 * in the window. A write of at most the FIFO's size (a loop's capacity) is
 * atomic (whole or it waits; O_NONBLOCK: -EAGAIN); a larger one goes in
 * pieces, and a blocking one returns when every byte is in (a signal ends it
 * with the count so far). A loop also has room only below its capacity.
 * When the core diverts writes meanwhile: KSHIM_FIFO_DIVERTED, with the bytes
 * already in the FIFO in *donep (the rest go as requests).
 */
static ssize_t kshim_fifo_write(struct kshim_channel *ch, struct file *file,
				const char __user *buf, size_t count,
				size_t *donep)
{
	struct kshim_fifo *f = &ch->tx;
	u32 record = kshim_fifo_record(f);
	size_t done = 0, n, need;
	long fill;
	u32 room;
	int ret = 0;

	*donep = 0;
	count -= count % record;
	if (!count)
		return -EINVAL;
	while (done < count) {
		/* An atomic write waits for room for all of it; else a record. */
		need = count <= (ch->loop_capacity ?: f->size) ? count : record;
		if (mutex_lock_interruptible(&f->lock)) {
			ret = -EINTR;
			break;
		}
		if (READ_ONCE(ch->dead)) {
			mutex_unlock(&f->lock);
			ret = kshim_fifo_dead_err(ch);
			break;
		}
		if (kshim_fifo_diverted(f)) {
			mutex_unlock(&f->lock);
			*donep = done;
			return KSHIM_FIFO_DIVERTED;
		}
		fill = kshim_fifo_fill(ch, f, false);
		if (fill < 0) {
			mutex_unlock(&f->lock);
			ret = fill;
			break;
		}
		room = kshim_fifo_room(ch, fill);
		if (room >= need) {
			n = min_t(size_t, count - done, room);
			n -= n % record;
			if (kshim_fifo_copy(f, f->index, (void __user *)buf + done,
					    n, false)) {
				mutex_unlock(&f->lock);
				ret = -EFAULT;
				break;
			}
			/* The bytes before the tail that publishes them. */
			smp_store_release(&f->ctl->tail, f->index + n);
			WRITE_ONCE(f->index, f->index + n);
			if (!done)
				kshim_fifo_count_call(f);
			mutex_unlock(&f->lock);
			done += n;
			kshim_fifo_kick(ch, f, fill + n, false);
			/* A loop is readable from here on: one poll event per write. */
			if (ch->loop_capacity)
				kshim_wake_stream_files(ch);
			continue;
		}
		mutex_unlock(&f->lock);
		/* Full (at or above every watermark): ask for a drain. */
		kshim_fifo_kick(ch, f, fill, false);
		if (file->f_flags & O_NONBLOCK) {
			ret = -EAGAIN;
			break;
		}
		kshim_fifo_count_waiter(f, 1);
		ret = wait_event_interruptible(f->wait,
					       kshim_fifo_writable(ch, need));
		kshim_fifo_count_waiter(f, -1);
		if (ret) {
			ret = -EINTR;
			break;
		}
	}
	return done ? done : ret;
}

/*
 * After a request that held a receive FIFO's lock (a diverted read, a
 * per-file FIFO's read or ioctl): the head moves past what the core took
 * back, then the lock goes; a loop's room is the writers'. Wakes the FIFO's
 * readers and the pollers.
 */
static void kshim_rx_unlock(struct kshim_channel *ch, struct kshim_fifo *f,
			    struct kshim_file *kf)
{
	kshim_rx_discard(f);
	mutex_unlock(&f->lock);
	if (f == &ch->rx) {
		if (ch->loop_capacity)
			wake_up_interruptible(&ch->tx.wait);
		kshim_wake_stream_files(ch);
	} else {
		wake_up_interruptible(&f->wait);
		wake_up_interruptible_poll(&kf->poll_wq, KSHIM_POLL_MASK);
	}
}

/*
 * Whether a read goes to the file's receive FIFO f: it has one, not diverted,
 * and the caller reads records in their native layout (a per-file FIFO's
 * records are 64-bit structures: a compat caller's read goes as a request).
 */
static bool kshim_read_serves(struct kshim_channel *ch, struct kshim_fifo *f)
{
	if (!f || !kshim_fifo_serves(f))
		return false;
	return f == &ch->rx || !in_compat_syscall();
}

/* One READ of at most a slot. */
static ssize_t kshim_read(struct file *file, char __user *buf, size_t count,
			  loff_t *ppos)
{
	struct kshim_file *kf = file->private_data;
	struct kshim_channel *ch;
	struct kshim_fifo *f;
	struct kshim_req req;
	ssize_t ret;
	u32 tag, len;

	if (!count)
		return 0;
	ch = kshim_file_channel(kf);
	if (IS_ERR(ch))
		return PTR_ERR(ch);
	f = kshim_file_rx(ch, kf);
	if (kshim_read_serves(ch, f)) {
		ret = kshim_fifo_read(ch, f, file, buf, count);
		if (ret != KSHIM_FIFO_DIVERTED)
			goto out_put_channel;
	}
	/*
	 * A read by request with a receive FIFO (uapi: Diverted; a per-file
	 * FIFO's takes back): the core may hand it the bytes the FIFO holds
	 * first, so no FIFO read may move the head meanwhile.
	 */
	if (f && mutex_lock_interruptible(&f->lock)) {
		ret = -EINTR;
		goto out_put_channel;
	}
	ret = kshim_tag_get(ch, &tag);
	if (ret)
		goto out_unlock;
	len = min_t(size_t, count, ch->slot_size);
	kshim_req_init(&req, ch, file, DEVEMU_OP_READ, tag, kf->fh);
	req.sqe.len = len;
	if (kshim_call(ch, &req)) {
		ret = -EINTR;
		goto out_unlock;
	}
	if (req.result < 0) {
		ret = kshim_errno(kf->kdev, req.result);
	} else if ((u32)req.result > len) {
		kshim_protocol_error(kf->kdev, "read returned more than asked");
		ret = -EIO;
	} else if (copy_to_user(buf, kshim_slot(ch, tag), req.result)) {
		ret = -EFAULT;
	} else {
		ret = req.result;
	}
	kshim_tag_put(ch, tag);
out_unlock:
	if (f)
		kshim_rx_unlock(ch, f, kf);
out_put_channel:
	kshim_channel_put(ch);
	return ret;
}

/*
 * WRITEs of at most a slot each, like CUSE's max_write chunks: a chunk the
 * core takes only in part (or a signal between chunks) ends the write with
 * the count moved so far.
 */
static ssize_t kshim_write(struct file *file, const char __user *buf,
			   size_t count, loff_t *ppos)
{
	struct kshim_file *kf = file->private_data;
	struct kshim_channel *ch;
	struct kshim_req req;
	size_t done = 0;
	ssize_t ret;
	u32 tag, len;

	if (!count)
		return 0;
	ch = kshim_file_channel(kf);
	if (IS_ERR(ch))
		return PTR_ERR(ch);
	if (kshim_fifo_serves(&ch->tx)) {
		ret = kshim_fifo_write(ch, file, buf, count, &done);
		if (ret != KSHIM_FIFO_DIVERTED) {
			kshim_channel_put(ch);
			return ret;
		}
		/* Diverted meanwhile: the rest goes as requests, after it. */
	}
	ret = kshim_tag_get(ch, &tag);
	if (ret)
		goto out_put_channel;
	while (done < count) {
		if (done && signal_pending(current))
			break;
		len = min_t(size_t, count - done, ch->slot_size);
		if (copy_from_user(kshim_slot(ch, tag), buf + done, len)) {
			ret = -EFAULT;
			break;
		}
		kshim_req_init(&req, ch, file, DEVEMU_OP_WRITE, tag, kf->fh);
		req.sqe.len = len;
		if (kshim_call(ch, &req)) {
			ret = -EINTR;
			goto out_put_channel;
		}
		if (req.result < 0) {
			ret = kshim_errno(kf->kdev, req.result);
			break;
		}
		if ((u32)req.result > len) {
			kshim_protocol_error(kf->kdev,
					     "write took more than given");
			ret = -EIO;
			break;
		}
		done += req.result;
		if ((u32)req.result < len)
			break;
	}
	kshim_tag_put(ch, tag);
out_put_channel:
	kshim_channel_put(ch);
	return done ? done : ret;
}

/*
 * poll without the shadow: ask the core. It raises ISR_SHADOW whenever a
 * file's readiness changes, which wakes the file's pollers to ask again.
 */
static __poll_t kshim_poll_call(struct kshim_channel *ch, struct kshim_file *kf,
				struct file *file, poll_table *pt)
{
	struct kshim_req req;
	__poll_t mask;
	u32 tag;
	int ret;

	ret = kshim_tag_get(ch, &tag);
	if (ret)
		return ret == -ERESTARTSYS ? 0 : EPOLLERR | EPOLLHUP;
	kshim_req_init(&req, ch, file, DEVEMU_OP_POLL, tag, kf->fh);
	req.sqe.out_len = mangle_poll(poll_requested_events(pt));
	if (kshim_call(ch, &req))
		return 0;
	if (req.result < 0)
		mask = EPOLLERR;
	else
		mask = demangle_poll((u16)req.aux) & KSHIM_POLL_MASK;
	kshim_tag_put(ch, tag);
	return mask;
}

/* The fill of a FIFO for poll/FIONREAD: a snapshot, out of range as 0. */
static u32 kshim_fifo_peek(struct kshim_fifo *f, bool rx)
{
	u32 fill;

	if (rx)
		fill = READ_ONCE(f->ctl->tail) - kshim_rx_head(f);
	else
		fill = READ_ONCE(f->index) - READ_ONCE(f->ctl->head);
	return fill <= f->size ? fill : 0;
}

/*
 * A per-file FIFO's bytes as the caller counts them: a 32-bit caller's
 * records are compat_record bytes each (uapi: Per-file receive FIFOs), its
 * reads go by request in that layout. Both sizes only scale a count here.
 */
static u32 kshim_fifo_caller_bytes(struct kshim_fifo *f, u32 fill)
{
	u32 record = kshim_fifo_record(f);
	u32 compat = clamp_t(u32, READ_ONCE(f->ctl->compat_record), 0, record);

	if (!in_compat_syscall() || !compat)
		return fill;
	return fill / record * compat;
}

/*
 * Readiness of the directions served by FIFOs (rx: the file's receive FIFO,
 * its own or the device-wide one) comes from their fill; while the core
 * diverts a direction, also from the shadow (the core puts the model's
 * readiness there when the model diverted it).
 */
static __poll_t kshim_fifo_poll(struct kshim_channel *ch, struct kshim_fifo *rx,
				__poll_t mask)
{
	u32 loop = kshim_rx_loop(ch, rx) ? kshim_loop_fill(ch) : 0;
	struct kshim_fifo *f;

	if (rx) {
		f = rx;
		if (!kshim_fifo_diverted(f))
			mask &= ~(EPOLLIN | EPOLLRDNORM);
		if (max(loop, kshim_fifo_peek(f, true)) >= kshim_fifo_record(f))
			mask |= EPOLLIN | EPOLLRDNORM;
	}
	if (ch->tx.size) {
		f = &ch->tx;
		if (!kshim_fifo_diverted(f))
			mask &= ~(EPOLLOUT | EPOLLWRNORM);
		if (kshim_fifo_room(ch, kshim_fifo_peek(f, false)) >=
		    kshim_fifo_record(f))
			mask |= EPOLLOUT | EPOLLWRNORM;
	}
	return mask;
}

static __poll_t kshim_poll(struct file *file, poll_table *pt)
{
	struct kshim_file *kf = file->private_data;
	struct kshim_channel *ch;
	struct kshim_fifo *rx;
	__poll_t mask;

	poll_wait(file, &kf->poll_wq, pt);
	ch = kshim_file_channel(kf);
	if (IS_ERR(ch))
		return EPOLLERR | EPOLLHUP;
	if (ch->features & DEVEMU_F_SHADOW_POLL)
		mask = kshim_shadow_read(ch, kf->fh, NULL);
	else
		mask = kshim_poll_call(ch, kf, file, pt);
	rx = kshim_file_rx(ch, kf);
	if (rx || ch->tx.size)
		mask = kshim_fifo_poll(ch, rx, mask);
	kshim_channel_put(ch);
	return mask;
}

/*
 * A retry list from the core: copy it out of the slot, check it, and fetch
 * its input ranges of the caller's memory, concatenated, into the slot.
 * On success *retryp holds the list (its output ranges receive the result).
 */
static int kshim_ioctl_retry(struct kshim_channel *ch,
			     struct kshim_device *kdev, u8 *slot,
			     struct devemu_ioctl_retry **retryp,
			     u32 *in_len, u32 *out_len)
{
	struct devemu_ioctl_retry hdr, *retry;
	u64 in_total = 0, out_total = 0, len;
	u32 count, i, off;
	size_t size;

	memcpy(&hdr, slot, sizeof(hdr));
	if (hdr.in_count > DEVEMU_IOCTL_MAX_IOV ||
	    hdr.out_count > DEVEMU_IOCTL_MAX_IOV ||
	    hdr.in_count + hdr.out_count > DEVEMU_IOCTL_MAX_IOV)
		goto err_protocol;
	count = hdr.in_count + hdr.out_count;
	size = struct_size(retry, iov, count);
	if (size > ch->slot_size)
		goto err_protocol;
	retry = kmalloc(size, GFP_KERNEL);
	if (!retry)
		return -ENOMEM;
	/* One copy; then only the copy and the counts checked above count. */
	memcpy(retry, slot, size);
	retry->in_count = hdr.in_count;
	retry->out_count = hdr.out_count;
	for (i = 0; i < count; i++) {
		len = retry->iov[i].len;
		if (len > ch->slot_size)
			goto err_protocol_free;
		if (i < hdr.in_count)
			in_total += len;
		else
			out_total += len;
	}
	if (in_total > ch->slot_size || out_total > ch->slot_size)
		goto err_protocol_free;

	for (i = 0, off = 0; i < hdr.in_count; i++) {
		len = retry->iov[i].len;
		if (copy_from_user(slot + off,
				   u64_to_user_ptr(retry->iov[i].base), len)) {
			kfree(retry);
			return -EFAULT;
		}
		off += len;
	}
	kfree(*retryp);
	*retryp = retry;
	*in_len = in_total;
	*out_len = out_total;
	return 0;

err_protocol_free:
	kfree(retry);
err_protocol:
	kshim_protocol_error(kdev, "bad ioctl retry list");
	return -EIO;
}

/*
 * The output bytes of the last round, to the output ranges of the last retry
 * list, in order.
 */
static int kshim_ioctl_copy_out(const struct devemu_ioctl_retry *retry,
				const u8 *slot, u32 len)
{
	u32 i, end, off = 0;
	u64 n;

	if (!retry)
		return 0;
	end = retry->in_count + retry->out_count;
	for (i = retry->in_count; i < end && off < len; i++) {
		n = min_t(u64, retry->iov[i].len, len - off);
		if (copy_to_user(u64_to_user_ptr(retry->iov[i].base),
				 slot + off, n))
			return -EFAULT;
		off += n;
	}
	return 0;
}

/*
 * A generic ioctl. With DEVEMU_F_IOCTL_RETRY the first round carries nothing
 * and the core asks for the caller's memory it needs (retry rounds); without
 * it the argument is what _IOC_DIR/_IOC_SIZE of cmd say it is, at arg.
 */
static long kshim_ioctl_call(struct kshim_channel *ch, struct kshim_file *kf,
			     struct file *file, unsigned int cmd,
			     unsigned long arg)
{
	bool restricted = !(ch->features & DEVEMU_F_IOCTL_RETRY);
	struct devemu_ioctl_retry *retry = NULL;
	struct kshim_device *kdev = kf->kdev;
	u32 tag, in_len = 0, out_len = 0;
	void __user *argp = (void __user *)arg;
	struct kshim_req req;
	int round;
	long ret;
	u8 *slot;

	ret = kshim_tag_get(ch, &tag);
	if (ret)
		return ret;
	slot = kshim_slot(ch, tag);
	if (restricted) {
		ret = -EINVAL;
		if (_IOC_SIZE(cmd) > ch->slot_size)
			goto out_put_tag;
		if (_IOC_DIR(cmd) & _IOC_WRITE) {
			in_len = _IOC_SIZE(cmd);
			ret = -EFAULT;
			if (copy_from_user(slot, argp, in_len))
				goto out_put_tag;
		}
		if (_IOC_DIR(cmd) & _IOC_READ)
			out_len = _IOC_SIZE(cmd);
	}

	for (round = 0; round < KSHIM_IOCTL_ROUNDS; round++) {
		kshim_req_init(&req, ch, file, DEVEMU_OP_IOCTL, tag, kf->fh);
		if (restricted)
			req.sqe.flags |= DEVEMU_SQE_F_IOCTL_RESTRICTED;
		req.sqe.ioctl_cmd = cmd;
		req.sqe.ioctl_arg = arg;
		req.sqe.len = in_len;
		req.sqe.out_len = out_len;
		if (kshim_call(ch, &req)) {
			ret = -EINTR;
			goto out_free_retry;
		}
		if (req.result >= 0 && (req.flags & DEVEMU_CQE_F_IOCTL_RETRY)) {
			ret = -EIO;
			if (restricted)
				kshim_protocol_error(kdev,
					"ioctl retry on a restricted ioctl");
			else
				ret = kshim_ioctl_retry(ch, kdev, slot, &retry,
							&in_len, &out_len);
			if (ret)
				goto out_put_tag;
			continue;
		}
		if (req.result < 0) {
			ret = kshim_errno(kdev, req.result);
		} else if (req.aux > out_len) {
			kshim_protocol_error(kdev,
				"ioctl output larger than its room");
			ret = -EIO;
		} else {
			if (restricted)
				ret = copy_to_user(argp, slot, req.aux) ?
				      -EFAULT : 0;
			else
				ret = kshim_ioctl_copy_out(retry, slot,
							   req.aux);
			if (!ret)
				ret = req.result;
		}
		goto out_put_tag;
	}
	kshim_protocol_error(kdev, "too many ioctl retry rounds");
	ret = -EIO;
out_put_tag:
	kshim_tag_put(ch, tag);
out_free_retry:
	kfree(retry);
	return ret;
}

static long kshim_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kshim_file *kf = file->private_data;
	struct kshim_channel *ch;
	struct kshim_fifo *f;
	u32 readable;
	long ret;

	ch = kshim_file_channel(kf);
	if (IS_ERR(ch))
		return PTR_ERR(ch);
	f = kf->fh < ch->file_fifo_count ? &ch->file_rx[kf->fh] : NULL;
	if (cmd == FIONREAD && f) {
		/*
		 * Its FIFO's bytes, and the model's (the core zeroes those
		 * while it serves the file from the FIFO).
		 */
		readable = 0;
		if (ch->features & DEVEMU_F_SHADOW_POLL)
			kshim_shadow_read(ch, kf->fh, &readable);
		readable = kshim_fifo_caller_bytes(f, kshim_fifo_peek(f, true)) +
			   min_t(u32, readable, INT_MAX);
		ret = put_user(min_t(u32, readable, INT_MAX),
			       (int __user *)arg);
	} else if (f) {
		/*
		 * The core may take the file's queue back (uapi: per-file
		 * FIFOs): no read moves the head until the discard is acted on.
		 */
		if (mutex_lock_interruptible(&f->lock)) {
			ret = -EINTR;
		} else {
			ret = kshim_ioctl_call(ch, kf, file, cmd, arg);
			kshim_rx_unlock(ch, f, kf);
		}
	} else if (cmd == FIONREAD && ch->rx.size) {
		/*
		 * A loop's bytes in flight are readable as a pipe's are; else
		 * rx's bytes, and while diverted the model's (in the shadow).
		 */
		u32 model = 0;

		if (!ch->loop_capacity && kshim_fifo_diverted(&ch->rx) &&
		    (ch->features & DEVEMU_F_SHADOW_POLL))
			kshim_shadow_read(ch, kf->fh, &model);
		readable = ch->loop_capacity ? kshim_loop_fill(ch) :
			   kshim_fifo_peek(&ch->rx, true) +
			   min_t(u32, model, INT_MAX);
		ret = put_user(min_t(u32, readable, INT_MAX),
			       (int __user *)arg);
	} else if (cmd == FIONREAD && (ch->features & DEVEMU_F_SHADOW_POLL)) {
		kshim_shadow_read(ch, kf->fh, &readable);
		ret = put_user(min_t(u32, readable, INT_MAX),
			       (int __user *)arg);
	} else {
		ret = kshim_ioctl_call(ch, kf, file, cmd, arg);
	}
	kshim_channel_put(ch);
	return ret;
}

const struct file_operations kshim_client_fops = {
	.owner = THIS_MODULE,
	.open = kshim_open,
	.release = kshim_release,
	.read = kshim_read,
	.write = kshim_write,
	.poll = kshim_poll,
	.unlocked_ioctl = kshim_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};
