/* SPDX-License-Identifier: GPL-2.0 */
/*
 * devemu_kshim: the objects shared by the control node (kshim_main.c), the
 * channel to the daemon (kshim_channel.c) and the client nodes
 * (kshim_client.c). The calls go one way: kshim_main.c uses the channel and
 * the client file operations, kshim_client.c uses the channel, and
 * kshim_channel.c uses neither.
 */
#ifndef DEVEMU_KSHIM_H
#define DEVEMU_KSHIM_H

#include <linux/atomic.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/version.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include <devemu/uapi/devemu.h>

struct kshim_channel;

/*
 * One client node /dev/NAME. Its lifetime is the reference count of the
 * embedded struct device: the module's device list holds one reference, every
 * open client file one (and the cdev one through its parent kobject), every
 * channel one. Removal only unpublishes it.
 */
struct kshim_device {
	struct device dev;
	struct cdev cdev;
	struct list_head node;		/* kshim_devices (kshim_lock) */
	char name[DEVEMU_DEVICE_NAME_MAX];
	/*
	 * A user device (DEVEMU_KSHIM_ADD_USER): owned by owner, its node in
	 * /dev/devemu-user/UID/NAME, its sysfs name uUID:NAME, reached by
	 * its owner's ATTACH and REMOVE only (and an administrator's).
	 */
	bool user;
	kuid_t owner;
	umode_t mode;
	kuid_t uid;
	kgid_t gid;

	/*
	 * Protects channel, epoch, removed, files and the request state of the
	 * channel (the fields marked "under kdev->lock" there). Taken from the
	 * irq eventfd's wake-up callback, so always with interrupts disabled.
	 */
	spinlock_t lock;
	struct list_head files;		/* open kshim_files */
	struct kshim_channel *channel;	/* never dead; NULL: NOSRV */
	u32 epoch;			/* of the newest channel */
	bool removed;

	atomic64_t requests[DEVEMU_OP_COUNT];	/* published, by opcode - 1 */
	atomic64_t stale_completions;
	atomic64_t protocol_errors;
	atomic64_t doorbells;		/* daemon wake-ups asked for */
};

/* One request of a caller, on the caller's stack while it waits. */
struct kshim_req {
	wait_queue_head_t wait;
	struct devemu_sqe sqe;
	bool done;			/* under kdev->lock */
	s32 result;
	u32 aux;
	u16 flags;
};

/*
 * One stream FIFO as the module sees it: its own copy of the geometry and of
 * its own index; the window's control block is read for the core's index,
 * watermark, record and kick only.
 */
struct kshim_fifo {
	struct devemu_fifo *ctl;	/* in the window */
	u8 *data;			/* in the window */
	u32 size;			/* 0: this direction is on the request path */
	u32 index;			/* the module's: rx head, tx tail (under lock) */
	u32 discard;			/* rx: ctl->discard last acted on (lock) */
	struct mutex lock;		/* one caller moves bytes at a time */
	wait_queue_head_t wait;		/* callers blocked on empty rx / full tx */
	u32 calls;			/* read()/write() calls served from the FIFO (lock) */
	spinlock_t waiters_lock;	/* waiters, and its copy in ctl */
	u32 waiters;			/* callers blocked on it now */
};

/*
 * A channel: one daemon serving one device in one attach epoch, through one
 * window. Created by ADD or ATTACH, owned by the channel file; detached (dead)
 * when that file is released, when the daemon closes the irq eventfd, when it
 * breaks the protocol or when the device is removed. Client calls hold a
 * reference while they use the window, so it outlives the detach.
 */
struct kshim_channel {
	struct kref ref;
	struct kshim_device *kdev;	/* holds a device reference */
	struct pid_namespace *pid_ns;	/* the daemon's, for caller pids */
	u32 epoch;
	u32 depth;
	u32 slot_size;
	u64 features;			/* accepted, from ADD/ATTACH */

	/* The window and the module's pointers into it (never read from it). */
	void *window;
	u64 window_size;
	struct devemu_regs *regs;
	struct devemu_shadow *shadow;
	struct devemu_shadow_file *files;
	struct devemu_ring *sq;
	struct devemu_ring *cq;
	struct devemu_sqe *sqes;
	struct devemu_cqe *cqes;
	u8 *data;
	struct kshim_fifo rx;		/* core produces, read() consumes */
	struct kshim_fifo tx;		/* write() produces, core consumes */
	u32 loop_capacity;		/* a loop's bound on bytes in flight (0: none) */
	/*
	 * Per-file receive FIFOs (DEVEMU_F_FILE_STREAM): file_rx[N] is read
	 * by the file whose OPEN returned fh N, for N < file_fifo_count.
	 */
	struct kshim_fifo *file_rx;
	u32 file_fifo_count;
	u32 irq_adjust, irq_discard;	/* rx.adjust, rx.discard at the last interrupt (kdev->lock) */

	struct eventfd_ctx *doorbell;
	struct eventfd_ctx *irq;
	wait_queue_entry_t irq_wait;
	poll_table irq_pt;
	bool irq_hooked;
	struct work_struct kick_work;	/* doorbell for the irq path */
	wait_queue_head_t tag_wq;	/* callers waiting for a free tag */
	wait_queue_head_t hup_wq;	/* pollers of the channel file */

	/* Under kdev->lock: */
	bool dead;
	int dead_err;			/* what waiting callers get */
	u32 sq_tail;			/* the module's own indices */
	u32 cq_head;
	DECLARE_BITMAP(busy, DEVEMU_MAX_QUEUE_DEPTH);	/* allocated */
	DECLARE_BITMAP(inflight, DEVEMU_MAX_QUEUE_DEPTH); /* await a CQE */
	struct kshim_req *owner[DEVEMU_MAX_QUEUE_DEPTH]; /* NULL: abandoned */
	u8 op[DEVEMU_MAX_QUEUE_DEPTH];
	struct list_head release_backlog; /* kshim_file waiting for a tag */
};

/* An open client file. */
struct kshim_file {
	struct kshim_device *kdev;	/* holds a device reference */
	struct list_head node;		/* in kdev->files while open */
	struct list_head backlog;	/* in release_backlog after close */
	wait_queue_head_t poll_wq;	/* shadow changes, detach */
	u32 shadow_seq;			/* shadow seq at the last wake */
	u32 fh;
	u32 epoch;
};

/*
 * The receive FIFO a file reads from: its own (fh < file_fifo_count), else the
 * device-wide one if there is one, else NULL (reads go as requests).
 */
static inline struct kshim_fifo *kshim_file_rx(struct kshim_channel *ch,
					       const struct kshim_file *kf)
{
	if (kf->fh < ch->file_fifo_count)
		return &ch->file_rx[kf->fh];
	return ch->rx.size ? &ch->rx : NULL;
}

/* Readiness bits a client poll can report from the daemon's revents. */
#define KSHIM_POLL_MASK (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | \
			 EPOLLHUP | EPOLLRDNORM | EPOLLRDBAND | EPOLLWRNORM | \
			 EPOLLWRBAND | EPOLLMSG | EPOLLRDHUP)

/* kshim_channel.c */
extern const struct file_operations kshim_channel_fops;
struct kshim_channel *kshim_channel_create(struct kshim_device *kdev,
					   const struct devemu_kshim_add *add,
					   u32 epoch);
struct kshim_channel *kshim_channel_get(struct kshim_device *kdev);
void kshim_channel_shutdown(struct kshim_channel *ch);
void kshim_channel_put(struct kshim_channel *ch);
void kshim_detach_locked(struct kshim_channel *ch, int err);
void kshim_protocol_error(struct kshim_device *kdev, const char *what);
int kshim_tag_get(struct kshim_channel *ch, u32 *tag);
void kshim_tag_put(struct kshim_channel *ch, u32 tag);
int kshim_call(struct kshim_channel *ch, struct kshim_req *req);
void kshim_release_file(struct kshim_channel *ch, struct kshim_file *kf);
__poll_t kshim_shadow_read(struct kshim_channel *ch, u32 fh, u32 *readable);
void kshim_status_read(struct kshim_channel *ch,
		       u32 words[DEVEMU_STATUS_WORDS]);
void kshim_wake_files_locked(struct kshim_device *kdev,
			     struct kshim_channel *ch);
void kshim_fifo_kick(struct kshim_channel *ch, struct kshim_fifo *f, u32 fill,
		     bool rx);
void kshim_wake_stream_files(struct kshim_channel *ch);

static inline u8 *kshim_slot(struct kshim_channel *ch, u32 tag)
{
	return ch->data + (size_t)tag * ch->slot_size;
}

/* kshim_client.c */
extern const struct file_operations kshim_client_fops;

#endif /* DEVEMU_KSHIM_H */
