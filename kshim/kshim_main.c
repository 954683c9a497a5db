// SPDX-License-Identifier: GPL-2.0
/*
 * devemu_kshim: a generic kernel driver for devemu devices. The control node
 * /dev/devemu-kshim adds, re-attaches and removes client nodes: /dev/NAME for
 * an administrator (CAP_SYS_ADMIN), /dev/devemu-user/UID/NAME for a user who
 * may open the node (a user device, its own only); a user-space daemon serves each through a channel fd: a shared
 * memory device window, a doorbell eventfd and an interrupt eventfd. The ABI
 * is core/include/devemu/uapi/devemu.h; kshim/README.md describes the module.
 */
#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/idr.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/uidgid.h>

#include "kshim.h"

#define KSHIM_MAX_DEVICES 256

static unsigned int max_user_devices = 8;
module_param(max_user_devices, uint, 0644);
MODULE_PARM_DESC(max_user_devices,
		 "user devices (DEVEMU_KSHIM_ADD_USER) each user may have at once (default 8)");

static DEFINE_MUTEX(kshim_lock);	/* device list; ADD, ATTACH, REMOVE */
static LIST_HEAD(kshim_devices);
static DEFINE_IDA(kshim_minors);
static dev_t kshim_devt;
static struct class *kshim_class;

static struct kshim_device *to_kshim_device(struct device *dev)
{
	return container_of(dev, struct kshim_device, dev);
}

static ssize_t state_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	struct kshim_device *kdev = to_kshim_device(dev);
	unsigned long flags;
	const char *state;

	spin_lock_irqsave(&kdev->lock, flags);
	if (kdev->removed)
		state = "removed";
	else if (kdev->channel)
		state = "serving";
	else
		state = "nosrv";
	spin_unlock_irqrestore(&kdev->lock, flags);
	return sysfs_emit(buf, "%s\n", state);
}
static DEVICE_ATTR_RO(state);

/* The user a user device belongs to, "-" for an administrator's device. */
static ssize_t owner_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	struct kshim_device *kdev = to_kshim_device(dev);

	if (!kdev->user)
		return sysfs_emit(buf, "-\n");
	return sysfs_emit(buf, "%u\n", from_kuid(&init_user_ns, kdev->owner));
}
static DEVICE_ATTR_RO(owner);

static ssize_t attach_epoch_show(struct device *dev,
				 struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(to_kshim_device(dev)->epoch));
}
static DEVICE_ATTR_RO(attach_epoch);

/*
 * The opcode names of the uapi list, in its order: at opcode - 1, since the
 * values are dense from 1 (the core's build asserts it).
 */
#define KSHIM_OP_NAME(op, value, name) name,
static const char *const kshim_op_names[] = {
	DEVEMU_OPCODES(KSHIM_OP_NAME)
};
#undef KSHIM_OP_NAME

static ssize_t requests_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	struct kshim_device *kdev = to_kshim_device(dev);
	long long count;
	int i, len = 0;

	BUILD_BUG_ON(ARRAY_SIZE(kshim_op_names) != DEVEMU_OP_COUNT);
	BUILD_BUG_ON(ARRAY_SIZE(kdev->requests) != DEVEMU_OP_COUNT);
	for (i = 0; i < ARRAY_SIZE(kshim_op_names); i++) {
		count = atomic64_read(&kdev->requests[i]);
		len += sysfs_emit_at(buf, len, "%s %lld\n", kshim_op_names[i],
				     count);
	}
	return len;
}
static DEVICE_ATTR_RO(requests);

/* The model's status words, from the window without a round trip. */
static ssize_t status_words_show(struct device *dev,
				 struct device_attribute *attr, char *buf)
{
	struct kshim_device *kdev = to_kshim_device(dev);
	u32 words[DEVEMU_STATUS_WORDS];
	struct kshim_channel *ch;
	int i, len = 0;

	ch = kshim_channel_get(kdev);
	if (!ch)
		return -ENODEV;
	kshim_status_read(ch, words);
	kshim_channel_put(ch);
	for (i = 0; i < ARRAY_SIZE(words); i++)
		len += sysfs_emit_at(buf, len, "%s%u", i ? " " : "", words[i]);
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}
static DEVICE_ATTR_RO(status_words);

/* A read-only sysfs attribute showing one of the device's atomic64 counters. */
#define KSHIM_COUNTER_ATTR(counter)                                          \
	static ssize_t counter##_show(struct device *dev,                    \
				      struct device_attribute *attr, char *buf) \
	{                                                                    \
		return sysfs_emit(buf, "%lld\n",                            \
				  (long long)atomic64_read(                  \
					  &to_kshim_device(dev)->counter));  \
	}                                                                    \
	static DEVICE_ATTR_RO(counter)

KSHIM_COUNTER_ATTR(stale_completions);
KSHIM_COUNTER_ATTR(protocol_errors);
KSHIM_COUNTER_ATTR(doorbells);

static struct attribute *kshim_attrs[] = {
	&dev_attr_state.attr,
	&dev_attr_attach_epoch.attr,
	&dev_attr_owner.attr,
	&dev_attr_requests.attr,
	&dev_attr_status_words.attr,
	&dev_attr_stale_completions.attr,
	&dev_attr_protocol_errors.attr,
	&dev_attr_doorbells.attr,
	NULL,
};
ATTRIBUTE_GROUPS(kshim);

/* devtmpfs (and udev, through the uevent) create the node with these. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
static char *kshim_devnode(const struct device *dev, umode_t *mode,
			   kuid_t *uid, kgid_t *gid)
#else
static char *kshim_devnode(struct device *dev, umode_t *mode,
			   kuid_t *uid, kgid_t *gid)
#endif
{
	const struct kshim_device *kdev = container_of(dev, struct kshim_device,
						       dev);

	if (mode)
		*mode = kdev->mode;
	if (uid)
		*uid = kdev->uid;
	if (gid)
		*gid = kdev->gid;
	/* A user's nodes live in a directory of their own (devtmpfs frees the name). */
	if (kdev->user)
		return kasprintf(GFP_KERNEL, DEVEMU_KSHIM_USER_DIR "/%u/%s",
				 from_kuid(&init_user_ns, kdev->owner),
				 kdev->name);
	return NULL;
}

static const struct device_type kshim_device_type = {
	.name = "devemu",
	.groups = kshim_groups,
	.devnode = kshim_devnode,
};

static void kshim_device_release(struct device *dev)
{
	struct kshim_device *kdev = to_kshim_device(dev);

	ida_free(&kshim_minors, MINOR(dev->devt));
	kfree(kdev);
}

/* A device, initialised but not yet added; put_device() frees it. */
static struct kshim_device *
kshim_device_alloc(const struct devemu_kshim_add *add)
{
	struct kshim_device *kdev;
	int minor, ret;

	kdev = kzalloc(sizeof(*kdev), GFP_KERNEL);
	if (!kdev)
		return ERR_PTR(-ENOMEM);
	minor = ida_alloc_max(&kshim_minors, KSHIM_MAX_DEVICES - 1, GFP_KERNEL);
	if (minor < 0) {
		kfree(kdev);
		return ERR_PTR(minor);
	}
	strscpy(kdev->name, add->name, sizeof(kdev->name));
	kdev->user = add->flags & DEVEMU_KSHIM_ADD_USER;
	kdev->owner = current_euid();
	kdev->mode = add->mode;
	kdev->uid = make_kuid(current_user_ns(), add->uid);
	kdev->gid = make_kgid(current_user_ns(), add->gid);
	INIT_LIST_HEAD(&kdev->node);
	INIT_LIST_HEAD(&kdev->files);
	spin_lock_init(&kdev->lock);

	device_initialize(&kdev->dev);
	kdev->dev.class = kshim_class;
	kdev->dev.type = &kshim_device_type;
	kdev->dev.devt = MKDEV(MAJOR(kshim_devt), minor);
	kdev->dev.release = kshim_device_release;
	cdev_init(&kdev->cdev, &kshim_client_fops);
	kdev->cdev.owner = THIS_MODULE;
	if (kdev->user)
		ret = dev_set_name(&kdev->dev, "u%u:%s",
				   from_kuid(&init_user_ns, kdev->owner),
				   kdev->name);
	else
		ret = dev_set_name(&kdev->dev, "%s", kdev->name);
	if (ret) {
		put_device(&kdev->dev);
		return ERR_PTR(ret);
	}
	return kdev;
}

/*
 * Unpublishes a device: its channel is detached (waiting callers get
 * -ENODEV, on the request path and on the stream FIFOs alike) and the node
 * goes away. Open files keep the structure until they are closed; their
 * operations fail with -ENODEV. Under kshim_lock.
 */
static void kshim_device_remove(struct kshim_device *kdev)
{
	unsigned long flags;

	list_del(&kdev->node);
	spin_lock_irqsave(&kdev->lock, flags);
	kdev->removed = true;
	if (kdev->channel)
		kshim_detach_locked(kdev->channel, -ENODEV);
	kshim_wake_files_locked(kdev, NULL);
	spin_unlock_irqrestore(&kdev->lock, flags);
	cdev_device_del(&kdev->cdev, &kdev->dev);
	put_device(&kdev->dev);
}

/* The device whose sysfs name is name: NAME, or uUID:NAME for a user device. */
static struct kshim_device *kshim_find_sysname(const char *name)
{
	struct kshim_device *kdev;

	list_for_each_entry(kdev, &kshim_devices, node)
		if (!strcmp(dev_name(&kdev->dev), name))
			return kdev;
	return NULL;
}

/* The user device NAME of owner. */
static struct kshim_device *kshim_find_user(const char *name, kuid_t owner)
{
	struct kshim_device *kdev;

	list_for_each_entry(kdev, &kshim_devices, node)
		if (kdev->user && uid_eq(kdev->owner, owner) &&
		    !strcmp(kdev->name, name))
			return kdev;
	return NULL;
}

/* The device an ADD, ATTACH (user: its flag) or REMOVE names. */
static struct kshim_device *kshim_find(const char *name, bool user)
{
	return user ? kshim_find_user(name, current_euid()) :
		      kshim_find_sysname(name);
}

static unsigned int kshim_user_devices(kuid_t owner)
{
	struct kshim_device *kdev;
	unsigned int n = 0;

	list_for_each_entry(kdev, &kshim_devices, node)
		n += kdev->user && uid_eq(kdev->owner, owner);
	return n;
}

/*
 * The bytes of a window a user device's bound counts: the data slots, and the
 * per-file FIFOs (256 of 64 KiB would be as much as the bound itself).
 */
static u64 kshim_user_window(const struct devemu_kshim_add *add)
{
	return (u64)add->queue_depth * add->slot_size +
	       (u64)add->file_fifo_count * add->file_fifo_size;
}

/*
 * What a user device may be (see DEVEMU_KSHIM_ADD_USER): the caller's node,
 * its group one of the caller's, nothing for others, a bounded window.
 */
static int kshim_check_user(const struct devemu_kshim_add *add)
{
	if (!uid_eq(make_kuid(current_user_ns(), add->uid), current_euid()) ||
	    !in_group_p(make_kgid(current_user_ns(), add->gid)) ||
	    (add->mode & 0007) ||
	    kshim_user_window(add) > DEVEMU_KSHIM_USER_WINDOW_MAX)
		return -EPERM;
	return 0;
}

/* [A-Za-z0-9_.-]{1,63}, not "." or "..", not the control node's name. */
static bool kshim_name_valid(const char *name)
{
	size_t len = strnlen(name, DEVEMU_DEVICE_NAME_MAX);
	size_t i;
	char c;

	if (!len || len == DEVEMU_DEVICE_NAME_MAX)
		return false;
	for (i = 0; i < len; i++) {
		c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return strcmp(name, ".") && strcmp(name, "..") &&
	       strcmp(name, DEVEMU_KSHIM_CONTROL_NAME);
}

/* A stream FIFO size: none, or a power of 2 within the uapi's bounds. */
static bool kshim_fifo_size_valid(u32 size)
{
	return !size || (is_power_of_2(size) && size >= DEVEMU_MIN_FIFO_SIZE &&
			 size <= DEVEMU_MAX_FIFO_SIZE);
}

/* Checks an ADD or ATTACH argument and fills in the default geometry. */
static int kshim_check_add(struct devemu_kshim_add *add, bool attach)
{
	int i;

	if (!kshim_name_valid(add->name) || (add->flags & ~DEVEMU_KSHIM_ADD_USER) ||
	    (add->features & ~DEVEMU_KSHIM_FEATURES))
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(add->reserved); i++)
		if (add->reserved[i])
			return -EINVAL;
	if (!add->queue_depth)
		add->queue_depth = DEVEMU_DEFAULT_QUEUE_DEPTH;
	if (!add->slot_size)
		add->slot_size = DEVEMU_DEFAULT_SLOT_SIZE;
	if (!is_power_of_2(add->queue_depth) ||
	    add->queue_depth > DEVEMU_MAX_QUEUE_DEPTH ||
	    add->slot_size % DEVEMU_WINDOW_PAGE ||
	    add->slot_size > DEVEMU_MAX_SLOT_SIZE)
		return -EINVAL;
	if ((add->rx_fifo_size || add->tx_fifo_size) &&
	    !(add->features & DEVEMU_F_STREAM))
		return -EINVAL;
	if (!kshim_fifo_size_valid(add->rx_fifo_size) ||
	    !kshim_fifo_size_valid(add->tx_fifo_size))
		return -EINVAL;
	/* Per-file FIFOs: a bounded count, each of a bounded power-of-2 size. */
	if (add->file_fifo_count &&
	    !(add->features & DEVEMU_F_FILE_STREAM))
		return -EINVAL;
	if (add->file_fifo_count > DEVEMU_MAX_FILE_FIFOS ||
	    (!add->file_fifo_count && add->file_fifo_size) ||
	    (add->file_fifo_count &&
	     (!add->file_fifo_size ||
	      !kshim_fifo_size_valid(add->file_fifo_size) ||
	      add->file_fifo_size > DEVEMU_MAX_FILE_FIFO_SIZE)))
		return -EINVAL;
	/* A loop needs both FIFOs, and room in tx for its largest atomic write. */
	if (add->stream_capacity &&
	    (!add->rx_fifo_size || add->stream_capacity > add->tx_fifo_size))
		return -EINVAL;
	if (attach)
		return 0;
	if (add->mode & ~0777U ||
	    !uid_valid(make_kuid(current_user_ns(), add->uid)) ||
	    !gid_valid(make_kgid(current_user_ns(), add->gid)))
		return -EINVAL;
	return 0;
}

/*
 * Makes ch the serving channel. It may already be dead: the irq eventfd can
 * be closed (EPOLLHUP) as soon as it is hooked. kdev->channel is never a dead
 * channel, so such a channel is not installed (the daemon sees POLLHUP).
 */
static void kshim_install(struct kshim_device *kdev, struct kshim_channel *ch)
{
	spin_lock_irq(&kdev->lock);
	kdev->epoch = ch->epoch;
	if (!ch->dead)
		kdev->channel = ch;
	spin_unlock_irq(&kdev->lock);
}

/*
 * The end ADD and ATTACH share: a channel file for ch on a new descriptor,
 * and ch installed as kdev's serving channel. Under kshim_lock; the caller
 * fd_install()s the descriptor once the lock is dropped. On failure nothing
 * is installed and ch is still the caller's.
 */
static int kshim_channel_fd(struct kshim_device *kdev,
			    struct kshim_channel *ch, struct file **filep)
{
	struct file *file;
	int fd;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0)
		return fd;
	file = anon_inode_getfile("[devemu-kshim]", &kshim_channel_fops, ch,
				  O_RDWR);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	kshim_install(kdev, ch);
	*filep = file;
	return fd;
}

static long kshim_add(struct devemu_kshim_add __user *uarg, bool admin)
{
	struct devemu_kshim_add add;
	struct kshim_device *kdev;
	struct kshim_channel *ch;
	struct file *file;
	bool user;
	int fd, ret;

	if (copy_from_user(&add, uarg, sizeof(add)))
		return -EFAULT;
	ret = kshim_check_add(&add, false);
	if (ret)
		return ret;
	user = add.flags & DEVEMU_KSHIM_ADD_USER;
	if (!admin && !user)
		return -EPERM;
	if (user) {
		ret = kshim_check_user(&add);
		if (ret)
			return ret;
	}

	mutex_lock(&kshim_lock);
	if (kshim_find(add.name, user)) {
		ret = -EEXIST;
		goto out_unlock;
	}
	if (user && kshim_user_devices(current_euid()) >= max_user_devices) {
		ret = -EDQUOT;
		goto out_unlock;
	}
	kdev = kshim_device_alloc(&add);
	if (IS_ERR(kdev)) {
		ret = PTR_ERR(kdev);
		goto out_unlock;
	}
	ch = kshim_channel_create(kdev, &add, 1);
	if (IS_ERR(ch)) {
		ret = PTR_ERR(ch);
		goto err_put_device;
	}
	/* Visible from here, but opens fail with -ENODEV until installed. */
	ret = cdev_device_add(&kdev->cdev, &kdev->dev);
	if (ret)
		goto err_shutdown_channel;
	fd = kshim_channel_fd(kdev, ch, &file);
	if (fd < 0) {
		ret = fd;
		goto err_del_device;
	}
	list_add_tail(&kdev->node, &kshim_devices);
	mutex_unlock(&kshim_lock);
	fd_install(fd, file);
	return fd;

err_del_device:
	cdev_device_del(&kdev->cdev, &kdev->dev);
err_shutdown_channel:
	kshim_channel_shutdown(ch);
err_put_device:
	put_device(&kdev->dev);
out_unlock:
	mutex_unlock(&kshim_lock);
	return ret;
}

static long kshim_attach(struct devemu_kshim_add __user *uarg, bool admin)
{
	struct devemu_kshim_add add;
	struct kshim_device *kdev;
	struct kshim_channel *ch;
	struct file *file;
	bool user;
	int fd, ret;

	if (copy_from_user(&add, uarg, sizeof(add)))
		return -EFAULT;
	ret = kshim_check_add(&add, true);
	if (ret)
		return ret;
	user = add.flags & DEVEMU_KSHIM_ADD_USER;
	if (!admin && !user)
		return -EPERM;

	mutex_lock(&kshim_lock);
	kdev = kshim_find(add.name, user);
	/* The window of the new channel is bounded as at ADD. */
	if (kdev && kdev->user && !admin &&
	    kshim_user_window(&add) > DEVEMU_KSHIM_USER_WINDOW_MAX) {
		ret = -EPERM;
		goto out_unlock;
	}
	if (!kdev) {
		ret = -ENOENT;
		goto out_unlock;
	}
	/* A channel is installed only under kshim_lock: this cannot change. */
	if (READ_ONCE(kdev->channel)) {
		ret = -EBUSY;
		goto out_unlock;
	}
	ch = kshim_channel_create(kdev, &add, kdev->epoch + 1);
	if (IS_ERR(ch)) {
		ret = PTR_ERR(ch);
		goto out_unlock;
	}
	fd = kshim_channel_fd(kdev, ch, &file);
	if (fd < 0) {
		ret = fd;
		goto err_shutdown_channel;
	}
	mutex_unlock(&kshim_lock);
	fd_install(fd, file);
	return fd;

err_shutdown_channel:
	kshim_channel_shutdown(ch);
out_unlock:
	mutex_unlock(&kshim_lock);
	return ret;
}

static long kshim_remove(char __user *uname, bool admin)
{
	char name[DEVEMU_DEVICE_NAME_MAX];
	struct kshim_device *kdev;
	int ret = 0;

	if (copy_from_user(name, uname, sizeof(name)))
		return -EFAULT;
	if (strnlen(name, sizeof(name)) == sizeof(name))
		return -EINVAL;
	mutex_lock(&kshim_lock);
	/* An administrator names any device by its sysfs name, or a user device of its own. */
	kdev = admin ? kshim_find_sysname(name) : NULL;
	if (!kdev)
		kdev = kshim_find_user(name, current_euid());
	if (kdev)
		kshim_device_remove(kdev);
	else
		ret = -ENOENT;
	mutex_unlock(&kshim_lock);
	return ret;
}

static long kshim_control_ioctl(struct file *file, unsigned int cmd,
				unsigned long arg)
{
	void __user *argp = (void __user *)arg;
	/*
	 * The caller's capability, not the opener's: an fd handed to a user
	 * gives it user devices of its own, nothing more. Without it, the node
	 * must have been opened for writing (its mode and group say by whom).
	 */
	bool admin = capable(CAP_SYS_ADMIN);

	if (!admin && !(file->f_mode & FMODE_WRITE))
		return -EPERM;
	switch (cmd) {
	case DEVEMU_KSHIM_IOC_ADD:
		return kshim_add(argp, admin);
	case DEVEMU_KSHIM_IOC_ATTACH:
		return kshim_attach(argp, admin);
	case DEVEMU_KSHIM_IOC_REMOVE:
		return kshim_remove(argp, admin);
	default:
		return -ENOIOCTLCMD;
	}
}

static const struct file_operations kshim_control_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kshim_control_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice kshim_control = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = DEVEMU_KSHIM_CONTROL_NAME,
	.fops = &kshim_control_fops,
	.mode = 0600,
};

static struct class *kshim_class_create(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	return class_create("devemu");
#else
	return class_create(THIS_MODULE, "devemu");
#endif
}

static int __init kshim_init(void)
{
	int ret;

	ret = alloc_chrdev_region(&kshim_devt, 0, KSHIM_MAX_DEVICES, "devemu");
	if (ret)
		return ret;
	kshim_class = kshim_class_create();
	if (IS_ERR(kshim_class)) {
		ret = PTR_ERR(kshim_class);
		goto err_unregister_region;
	}
	ret = misc_register(&kshim_control);
	if (ret)
		goto err_destroy_class;
	return 0;

err_destroy_class:
	class_destroy(kshim_class);
err_unregister_region:
	unregister_chrdev_region(kshim_devt, KSHIM_MAX_DEVICES);
	return ret;
}

/*
 * Open channel and client files pin the module (their fops are owned by it),
 * so what is left here are devices without a daemon and without open files.
 */
static void __exit kshim_exit(void)
{
	struct kshim_device *kdev, *next;

	misc_deregister(&kshim_control);
	mutex_lock(&kshim_lock);
	list_for_each_entry_safe(kdev, next, &kshim_devices, node)
		kshim_device_remove(kdev);
	mutex_unlock(&kshim_lock);
	class_destroy(kshim_class);
	unregister_chrdev_region(kshim_devt, KSHIM_MAX_DEVICES);
	ida_destroy(&kshim_minors);
}

module_init(kshim_init);
module_exit(kshim_exit);

MODULE_DESCRIPTION("devemu: character devices served from user space");
MODULE_LICENSE("GPL");
