// SPDX-License-Identifier: MIT
// FuseBridge: request mapping, asynchronous replies, FUSE_INTERRUPT, poll handles, ioctl retry rounds.
#include "fuse_bridge.h"

#include "ioctl_retry.h"

#include "devemu/log.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <linux/fuse.h>
#include <memory>
#include <poll.h>
#include <sys/uio.h>
#include <vector>

namespace devemu {

namespace {

/*
 * fuse_reply_open() for a node that behaves like a character device: direct I/O, no seeking, and
 * FOPEN_STREAM, which libfuse 3.14's fuse_file_info cannot express (hence the reply built here,
 * the same struct fuse_open_out fuse_reply_open() sends). A stream file has no position, so the
 * kernel takes no f_pos lock around read() and write(): on the FUSE fallback's regular file a
 * thread blocked in read() would otherwise hold up another thread's write() on the same descriptor
 * (a serial program's reader thread and writer thread), which never happens on a character device.
 */
void replyOpenStream(fuse_req_t req, uint64_t fh)
{
	fuse_open_out out{};
	out.fh = fh;
	out.open_flags = FOPEN_DIRECT_IO | FOPEN_NONSEEKABLE | FOPEN_STREAM;
	fuse_reply_buf(req, reinterpret_cast<const char *>(&out), sizeof(out));
}

} // namespace

FuseBridge::FuseBridge(Strand strand, Window &window, WindowDriver &driver, bool restrictedIoctls)
	: strand_(std::move(strand)), window_(window), driver_(driver), restricted_(restrictedIoctls)
{}

FuseBridge::~FuseBridge()
{
	for (auto &[fh, a] : armed_)
		fuse_pollhandle_destroy(a.ph);
}

devemu_sqe FuseBridge::baseSqe(fuse_req_t req, uint8_t opcode, const fuse_file_info *fi) const
{
	devemu_sqe sqe{};
	sqe.opcode = opcode;
	if (fi) {
		sqe.fh = static_cast<uint32_t>(fi->fh);
		sqe.open_flags = static_cast<uint32_t>(fi->flags);
		if (fi->flags & O_NONBLOCK)
			sqe.flags |= DEVEMU_SQE_F_NONBLOCK;
		if (compatFiles_.count(sqe.fh))
			sqe.flags |= DEVEMU_SQE_F_COMPAT;
	}
	const fuse_ctx *ctx = fuse_req_ctx(req);
	sqe.pid = static_cast<uint32_t>(ctx->pid);
	sqe.uid = ctx->uid;
	sqe.gid = ctx->gid;
	return sqe;
}

void FuseBridge::interrupted(fuse_req_t, void *data)
{
	/*
	 * libfuse may call this from inside fuse_req_interrupt_func(), where
	 * replying would free the request under its own lock: cancel later.
	 */
	auto *cookie = static_cast<InterruptCookie *>(data);
	WindowDriver *driver = cookie->driver;
	WindowDriver::RequestId id = cookie->id;
	asio::post(cookie->strand, [driver, id] { driver->cancel(id); });
}

void FuseBridge::submit(fuse_req_t req, const devemu_sqe &sqe, std::span<const std::byte> data,
			WindowDriver::Completion done)
{
	WindowDriver::RequestId id = driver_.submit(sqe, data, std::move(done));
	/* Completed at once (the usual case): the request is gone, do not touch it. */
	if (!driver_.pending(id))
		return;
	/* It waits: let FUSE_INTERRUPT cancel it. Cookies of requests that are done since are freed here. */
	std::erase_if(cookies_, [this](const auto &c) { return !driver_.pending(c->id); });
	auto cookie = std::make_unique<InterruptCookie>(InterruptCookie{ &driver_, strand_, id });
	fuse_req_interrupt_func(req, &FuseBridge::interrupted, cookie.get());
	cookies_.push_back(std::move(cookie));
}

void FuseBridge::open(fuse_req_t req, fuse_file_info *fi)
{
	try {
		devemu_sqe sqe = baseSqe(req, DEVEMU_OP_OPEN, fi);
		sqe.fh = 0;
		submit(req, sqe, {}, [req](const devemu_cqe &cqe, std::span<const std::byte>) {
			if (cqe.result < 0)
				fuse_reply_err(req, -cqe.result);
			else
				replyOpenStream(req, static_cast<uint64_t>(cqe.result));
		});
	} catch (...) {
		fuse_reply_err(req, EIO);
	}
}

void FuseBridge::read(fuse_req_t req, size_t size, fuse_file_info *fi)
{
	try {
		devemu_sqe sqe = baseSqe(req, DEVEMU_OP_READ, fi);
		/* A character device may return fewer bytes than asked: clamp to one slot. */
		sqe.len = static_cast<uint32_t>(std::min<size_t>(size, window_.slotSize()));
		submit(req, sqe, {}, [req](const devemu_cqe &cqe, std::span<const std::byte> slot) {
			if (cqe.result < 0)
				fuse_reply_err(req, -cqe.result);
			else
				fuse_reply_buf(req, reinterpret_cast<const char *>(slot.data()),
					       static_cast<size_t>(cqe.result));
		});
	} catch (...) {
		fuse_reply_err(req, EIO);
	}
}

void FuseBridge::write(fuse_req_t req, const char *buf, size_t size, fuse_file_info *fi)
{
	try {
		devemu_sqe sqe = baseSqe(req, DEVEMU_OP_WRITE, fi);
		sqe.len = static_cast<uint32_t>(std::min<size_t>(size, window_.slotSize()));
		submit(req, sqe, { reinterpret_cast<const std::byte *>(buf), sqe.len },
		       [req](const devemu_cqe &cqe, std::span<const std::byte>) {
			       if (cqe.result < 0)
				       fuse_reply_err(req, -cqe.result);
			       else
				       fuse_reply_write(req, static_cast<size_t>(cqe.result));
		       });
	} catch (...) {
		fuse_reply_err(req, EIO);
	}
}

void FuseBridge::flush(fuse_req_t req, fuse_file_info *)
{
	fuse_reply_err(req, 0);
}

void FuseBridge::disarm(uint32_t fh)
{
	auto it = armed_.find(fh);
	if (it == armed_.end())
		return;
	fuse_pollhandle_destroy(it->second.ph);
	armed_.erase(it);
}

void FuseBridge::release(fuse_req_t req, fuse_file_info *fi)
{
	try {
		devemu_sqe sqe = baseSqe(req, DEVEMU_OP_RELEASE, fi);
		sqe.flags &= ~DEVEMU_SQE_F_NONBLOCK;
		disarm(sqe.fh);
		compatFiles_.erase(sqe.fh);
		driver_.submit(sqe, {},
			       [req](const devemu_cqe &, std::span<const std::byte>) { fuse_reply_err(req, 0); });
	} catch (...) {
		fuse_reply_err(req, 0);
	}
}

void FuseBridge::ioctl(fuse_req_t req, unsigned int cmd, void *arg, fuse_file_info *fi, unsigned flags,
		       const void *inBuf, size_t inSize, size_t outSize)
{
	try {
		/* A 32-bit caller on a 64-bit kernel: the model decodes its layouts (IoctlCall::compat()). */
		if ((flags & FUSE_IOCTL_COMPAT) && fi)
			compatFiles_.insert(static_cast<uint32_t>(fi->fh));
		devemu_sqe sqe = baseSqe(req, DEVEMU_OP_IOCTL, fi);
		if (flags & FUSE_IOCTL_COMPAT)
			sqe.flags |= DEVEMU_SQE_F_COMPAT;
		sqe.ioctl_cmd = cmd;
		sqe.ioctl_arg = reinterpret_cast<uintptr_t>(arg);
		sqe.len = static_cast<uint32_t>(std::min<size_t>(inSize, window_.slotSize()));
		sqe.out_len = static_cast<uint32_t>(std::min<size_t>(outSize, window_.slotSize()));
		if (restricted_ || !(flags & FUSE_IOCTL_UNRESTRICTED))
			sqe.flags |= DEVEMU_SQE_F_IOCTL_RESTRICTED;
		submit(req, sqe, { static_cast<const std::byte *>(inBuf), sqe.len },
		       [req](const devemu_cqe &cqe, std::span<const std::byte> slot) {
			       if (cqe.flags & DEVEMU_CQE_F_IOCTL_RETRY) {
				       IoctlRetryList list;
				       if (decodeIoctlRetry(slot, list) < 0) {
					       fuse_reply_err(req, EINVAL);
					       return;
				       }
				       fuse_reply_ioctl_retry(req, list.iov.data(), list.inCount,
							      list.iov.data() + list.inCount, list.outCount);
				       return;
			       }
			       if (cqe.result < 0)
				       fuse_reply_err(req, -cqe.result);
			       else
				       fuse_reply_ioctl(req, cqe.result, slot.data(),
							std::min<size_t>(cqe.aux, slot.size()));
		       });
	} catch (...) {
		fuse_reply_err(req, EIO);
	}
}

void FuseBridge::poll(fuse_req_t req, fuse_file_info *fi, fuse_pollhandle *ph)
{
	try {
		devemu_sqe sqe = baseSqe(req, DEVEMU_OP_POLL, fi);
		sqe.flags &= ~DEVEMU_SQE_F_NONBLOCK;
		sqe.out_len = fi->poll_events ? fi->poll_events
					      : POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLWRNORM | POLLRDHUP;
		uint32_t fh = sqe.fh;
		if (ph) {
			/* The kernel keeps one handle per file: the newest replaces the last. */
			disarm(fh);
			if (fh < DEVEMU_MAX_FILES)
				armed_[fh] = { ph, loadAcquire(window_.fileShadow(fh).seq) };
			else
				fuse_pollhandle_destroy(ph);
		}
		driver_.submit(sqe, {}, [req](const devemu_cqe &cqe, std::span<const std::byte>) {
			if (cqe.result < 0)
				fuse_reply_err(req, -cqe.result);
			else
				fuse_reply_poll(req, cqe.aux);
		});
	} catch (...) {
		fuse_reply_err(req, EIO);
	}
}

void FuseBridge::shadowChanged()
{
	for (auto it = armed_.begin(); it != armed_.end();) {
		uint32_t seq = loadAcquire(window_.fileShadow(it->first).seq);
		if (seq == it->second.seq) {
			++it;
			continue;
		}
		fuse_lowlevel_notify_poll(it->second.ph);
		fuse_pollhandle_destroy(it->second.ph);
		it = armed_.erase(it);
	}
}

} // namespace devemu
