// SPDX-License-Identifier: MIT
// bare_cuse: the thinnest CUSE responder we can write, the floor of any CUSE daemon's per-op cost.

/*
 * Usage: bare_cuse NAME [libfuse options]
 *
 * Serves /dev/NAME, single-threaded and in the foreground, and answers every
 * request at once from the receiving thread: open, read (zeros), write (all
 * bytes taken), poll (always POLLIN|POLLOUT, no notification), FIONREAD (0,
 * through the usual unrestricted-ioctl retry round) and release. Nothing else
 * happens on the request path, so devemud's cost over this is its own.
 */

#define FUSE_USE_VERSION 35

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <fuse3/cuse_lowlevel.h>

/* Larger than any single CUSE read (libfuse announces max_read = 128 KiB); in .bss. */
static char zeros[1 << 20];

static void bare_open(fuse_req_t req, struct fuse_file_info *fi)
{
	fuse_reply_open(req, fi);
}

static void bare_read(fuse_req_t req, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	(void)off;
	(void)fi;
	if (size > sizeof(zeros))
		size = sizeof(zeros);
	fuse_reply_buf(req, zeros, size);
}

static void bare_write(fuse_req_t req, const char *buf, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	(void)buf;
	(void)off;
	(void)fi;
	fuse_reply_write(req, size);
}

static void bare_poll(fuse_req_t req, struct fuse_file_info *fi,
		      struct fuse_pollhandle *ph)
{
	(void)fi;
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, POLLIN | POLLOUT);
}

static void bare_ioctl(fuse_req_t req, int cmd, void *arg,
		       struct fuse_file_info *fi, unsigned int flags,
		       const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct iovec out = { .iov_base = arg, .iov_len = sizeof(int) };
	int nread = 0;

	(void)fi;
	(void)in_buf;
	(void)in_bufsz;
	(void)flags;
	if ((unsigned int)cmd != FIONREAD) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	/* First round: ask the kernel to fetch the caller's int; then answer. */
	if (out_bufsz < sizeof(int))
		fuse_reply_ioctl_retry(req, NULL, 0, &out, 1);
	else
		fuse_reply_ioctl(req, 0, &nread, sizeof(nread));
}

static void bare_release(fuse_req_t req, struct fuse_file_info *fi)
{
	(void)fi;
	fuse_reply_err(req, 0);
}

static const struct cuse_lowlevel_ops bare_ops = {
	.open = bare_open,
	.read = bare_read,
	.write = bare_write,
	.poll = bare_poll,
	.ioctl = bare_ioctl,
	.release = bare_release,
};

int main(int argc, char *argv[])
{
	char devname[128];
	const char *dev_info[] = { devname };
	struct cuse_info ci = {
		.dev_info_argc = 1,
		.dev_info_argv = dev_info,
		.flags = CUSE_UNRESTRICTED_IOCTL,
	};
	char *fuse_argv[64];
	int fuse_argc = 0;
	int i;

	if (argc < 2 || argv[1][0] == '-' || argc > 60) {
		fprintf(stderr, "usage: %s NAME [libfuse options]\n", argv[0]);
		return 2;
	}
	if (snprintf(devname, sizeof(devname), "DEVNAME=%s", argv[1]) >=
	    (int)sizeof(devname)) {
		fprintf(stderr, "%s: device name too long\n", argv[0]);
		return 2;
	}

	/* Foreground and single-threaded: one thread receives and replies. */
	fuse_argv[fuse_argc++] = argv[0];
	fuse_argv[fuse_argc++] = "-f";
	fuse_argv[fuse_argc++] = "-s";
	for (i = 2; i < argc; i++)
		fuse_argv[fuse_argc++] = argv[i];
	fuse_argv[fuse_argc] = NULL;

	return cuse_lowlevel_main(fuse_argc, fuse_argv, &ci, &bare_ops, NULL);
}
