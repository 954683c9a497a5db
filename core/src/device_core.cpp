// SPDX-License-Identifier: MIT
// DeviceCore: request dispatch, blocking semantics (park, wake, cancel), completions, shadow registers.
#include "devemu/device_core.h"

#include "devemu/log.h"

#include <asm-generic/ioctl.h>
#include <cerrno>
#include <poll.h>

namespace devemu {

DeviceCore::DeviceCore(Strand strand, std::string name, Window &window)
	: strand_(std::move(strand)), name_(std::move(name)), window_(window),
	  files_(DEVEMU_MAX_FILES), inflight_(window.queueDepth(), 0)
{
	devemu_regs &r = window_.regs();
	r.features_accepted = r.features_offered &
			      (DEVEMU_F_SHADOW_POLL | DEVEMU_F_IOCTL_RETRY | DEVEMU_F_CANCEL | DEVEMU_F_NEED_KICK);
	std::atomic_ref<uint32_t>(r.status).fetch_or(DEVEMU_STATUS_ACKNOWLEDGE | DEVEMU_STATUS_DRIVER_OK);
	std::atomic_ref<uint32_t>(window_.sq().flags).fetch_or(DEVEMU_RING_NEED_KICK);
}

DeviceCore::~DeviceCore()
{
	for (auto &f : files_)
		if (f && model_)
			model_->release(*f);
}

OpenFile *DeviceCore::file(uint32_t fh)
{
	return fh < files_.size() ? files_[fh].get() : nullptr;
}

void DeviceCore::protocolError(const devemu_sqe &sqe, const char *what)
{
	stats_.protocolErrors++;
	DEVEMU_LOG(Warning, name_, "dropping malformed request (opcode {} tag {}): {}", sqe.opcode, sqe.tag, what);
}

void DeviceCore::doorbell()
{
	if (inDispatch_) {
		kicked_ = true;
		return;
	}
	dispatch();
}

void DeviceCore::notify(uint32_t pulse)
{
	dirty_ = true;
	shadowDirty_ = true;
	pulse_ |= pulse;
	if (!inDispatch_)
		dispatch();
}

void DeviceCore::dispatch()
{
	inDispatch_ = true;
	devemu_ring &sq = window_.sq();
	std::atomic_ref<uint32_t> sqFlags(sq.flags);
	do {
		kicked_ = false;
		sqFlags.fetch_and(~DEVEMU_RING_NEED_KICK);
		for (;;) {
			uint32_t head = sq.head;
			uint32_t tail = loadAcquire(sq.tail);
			if (head == tail) {
				/* Say we sleep, then look again: a driver that published meanwhile saw no flag. */
				sqFlags.fetch_or(DEVEMU_RING_NEED_KICK);
				std::atomic_thread_fence(std::memory_order_seq_cst);
				if (loadAcquire(sq.tail) == head)
					break;
				sqFlags.fetch_and(~DEVEMU_RING_NEED_KICK);
				continue;
			}
			if (tail - head > window_.sqEntries()) {
				/* A producer index beyond the ring: skip to it rather than read garbage forever. */
				devemu_sqe bogus{};
				protocolError(bogus, "submission tail runs past the ring");
				storeRelease(sq.head, tail);
				continue;
			}
			devemu_sqe sqe = window_.sqe(head);
			storeRelease(sq.head, head + 1);
			process(sqe);
		}
		runWakeups();
		publishShadows();
		if (pendingIsr_) {
			uint32_t isr = std::exchange(pendingIsr_, 0);
			std::atomic_ref<uint32_t>(window_.regs().isr).fetch_or(isr);
			if (interrupt_)
				interrupt_(isr);
		}
	} while (kicked_ || dirty_ || pendingIsr_);
	inDispatch_ = false;
}

void DeviceCore::complete(const devemu_sqe &sqe, int32_t result, uint32_t aux, uint16_t flags)
{
	devemu_ring &cq = window_.cq();
	uint32_t tail = cq.tail;
	if (tail - loadAcquire(cq.head) >= window_.queueDepth()) {
		/* Cannot happen with one completion per tag; refuse to overwrite unread entries. */
		DEVEMU_LOG(Error, name_, "completion ring full, dropping completion of tag {}", sqe.tag);
		return;
	}
	devemu_cqe &cqe = window_.cqe(tail);
	cqe.tag = sqe.tag;
	cqe.result = result;
	cqe.aux = aux;
	cqe.epoch = static_cast<uint16_t>(sqe.epoch);
	cqe.flags = flags;
	storeRelease(cq.tail, tail + 1);
	if (sqe.tag < inflight_.size())
		inflight_[sqe.tag] = 0;
	if (result < 0 && sqe.opcode >= DEVEMU_OP_OPEN && sqe.opcode <= DEVEMU_OP_CANCEL)
		stats_.errors[sqe.opcode - 1]++;
	pendingIsr_ |= DEVEMU_ISR_CQ;
}

void DeviceCore::process(const devemu_sqe &sqe)
{
	if (sqe.tag >= window_.queueDepth())
		return protocolError(sqe, "tag out of range");
	if (sqe.opcode < DEVEMU_OP_OPEN || sqe.opcode > DEVEMU_OP_CANCEL)
		return protocolError(sqe, "unknown opcode");
	stats_.requests[sqe.opcode - 1]++;

	if (sqe.opcode == DEVEMU_OP_CANCEL) {
		/* A cancel shares its target's tag: end the parked request; if none, it already completed. */
		for (auto it = parked_.begin(); it != parked_.end(); ++it) {
			if (it->sqe.tag != sqe.tag)
				continue;
			stats_.cancelled++;
			int32_t result = it->progress ? static_cast<int32_t>(it->progress) : -EINTR;
			complete(it->sqe, result);
			parked_.erase(it);
			break;
		}
		return;
	}
	if (inflight_[sqe.tag])
		return protocolError(sqe, "tag already in flight");
	inflight_[sqe.tag] = 1;

	if (stopError_)
		return complete(sqe, sqe.opcode == DEVEMU_OP_OPEN ? -ENODEV : stopError_);
	if (!model_)
		return complete(sqe, -ENODEV);

	if (sqe.opcode == DEVEMU_OP_OPEN) {
		uint32_t fh = 0;
		while (fh < files_.size() && files_[fh])
			fh++;
		if (fh == files_.size())
			return complete(sqe, -ENFILE);
		auto f = std::make_unique<OpenFile>();
		f->fh = fh;
		f->flags = sqe.open_flags;
		f->pid = static_cast<pid_t>(sqe.pid);
		f->uid = sqe.uid;
		f->gid = sqe.gid;
		int ret = model_->open(*f);
		if (ret < 0)
			return complete(sqe, ret);
		files_[fh] = std::move(f);
		openCount_++;
		stats_.opens++;
		/* A fresh file starts with a clean shadow entry; publishShadows fills it. */
		seqlockWrite(window_.fileShadow(fh), [](devemu_shadow_file &s) { s.revents = s.readable = s.writable = 0; });
		shadowDirty_ = true;
		return complete(sqe, static_cast<int32_t>(fh));
	}

	OpenFile *f = file(sqe.fh);
	if (!f)
		return complete(sqe, -EBADF);

	switch (sqe.opcode) {
	case DEVEMU_OP_RELEASE: {
		/* The driver releases only idle files; end anything left so no tag leaks. */
		for (auto it = parked_.begin(); it != parked_.end();) {
			if (it->sqe.fh == sqe.fh) {
				complete(it->sqe, -EBADF);
				it = parked_.erase(it);
			} else {
				++it;
			}
		}
		model_->release(*f);
		files_[sqe.fh].reset();
		openCount_--;
		shadowDirty_ = true;
		return complete(sqe, 0);
	}
	case DEVEMU_OP_POLL: {
		uint32_t revents = model_->poll(*f) & (sqe.out_len | POLLERR | POLLHUP | POLLNVAL);
		return complete(sqe, 0, revents);
	}
	case DEVEMU_OP_READ:
	case DEVEMU_OP_WRITE:
	case DEVEMU_OP_IOCTL: {
		if (sqe.len > window_.slotSize() || sqe.out_len > window_.slotSize())
			return complete(sqe, -EINVAL);
		Request req{ sqe };
		if (!attempt(req))
			park(req);
		return;
	}
	}
}

void DeviceCore::park(Request &req)
{
	req.parked = true;
	stats_.parked++;
	parked_.push_back(req);
}

bool DeviceCore::attempt(Request &req)
{
	const devemu_sqe &sqe = req.sqe;
	OpenFile &f = *files_[sqe.fh];
	bool nonblock = sqe.flags & DEVEMU_SQE_F_NONBLOCK;
	std::span<std::byte> slot = window_.slot(sqe.tag);

	switch (sqe.opcode) {
	case DEVEMU_OP_READ: {
		ssize_t n = model_->read(f, slot.first(sqe.len));
		if (n == -EAGAIN && !nonblock)
			return false;
		if (n > 0)
			stats_.bytesOut += static_cast<uint64_t>(n);
		complete(sqe, static_cast<int32_t>(n));
		return true;
	}
	case DEVEMU_OP_WRITE: {
		/* Pipe semantics: a blocking write completes when every byte was accepted. */
		while (req.progress < sqe.len) {
			ssize_t n = model_->write(f, slot.subspan(req.progress, sqe.len - req.progress));
			if (n == -EAGAIN || n == 0)
				break;
			if (n < 0) {
				complete(sqe, req.progress ? static_cast<int32_t>(req.progress) : static_cast<int32_t>(n));
				return true;
			}
			req.progress += static_cast<uint32_t>(n);
			stats_.bytesIn += static_cast<uint64_t>(n);
		}
		if (req.progress == sqe.len || nonblock) {
			complete(sqe, req.progress ? static_cast<int32_t>(req.progress) : -EAGAIN);
			return true;
		}
		return false;
	}
	case DEVEMU_OP_IOCTL:
		return attemptIoctl(req, f);
	}
	return true;
}

bool DeviceCore::coreIoctl(IoctlCall &call, OpenFile &file, IoctlResult &result)
{
	switch (call.cmd()) {
	case DEVEMU_IOC_COUNTERS: {
		devemu_counters c{};
		c.bytes_in = stats_.bytesIn;
		c.bytes_out = stats_.bytesOut;
		c.opens = stats_.opens;
		c.dropped = model_->dropped();
		result = call.replyArg(c);
		return true;
	}
	case DEVEMU_IOC_NREAD:
		result = call.replyArg(static_cast<uint32_t>(model_->readable(file)));
		return true;
	default:
		return false;
	}
}

bool DeviceCore::attemptIoctl(Request &req, OpenFile &f)
{
	const devemu_sqe &sqe = req.sqe;
	std::span<std::byte> slot = window_.slot(sqe.tag);
	bool restricted = sqe.flags & DEVEMU_SQE_F_IOCTL_RESTRICTED;
	/* The input lives in the slot that the output overwrites: work on a copy of it. */
	std::vector<std::byte> in(slot.begin(), slot.begin() + sqe.len);
	IoctlCall call(sqe.ioctl_cmd, sqe.ioctl_arg, in, sqe.out_len, restricted);
	IoctlResult result;
	if (!coreIoctl(call, f, result))
		result = model_->ioctl(f, call);

	switch (result.kind) {
	case IoctlResult::Kind::WouldBlock:
		if (!(sqe.flags & DEVEMU_SQE_F_NONBLOCK))
			return false;
		complete(sqe, -EAGAIN);
		return true;
	case IoctlResult::Kind::Retry: {
		const auto &ins = call.inRanges();
		const auto &outs = call.outRanges();
		uint64_t inTotal = 0, outTotal = 0;
		for (auto &r : ins)
			inTotal += r.len;
		for (auto &r : outs)
			outTotal += r.len;
		size_t count = ins.size() + outs.size();
		size_t need = sizeof(devemu_ioctl_retry) + count * sizeof(devemu_iovec);
		if (count > DEVEMU_IOCTL_MAX_IOV || need > slot.size() || inTotal > slot.size() ||
		    outTotal > slot.size()) {
			complete(sqe, -EINVAL);
			return true;
		}
		devemu_ioctl_retry hdr{ static_cast<uint32_t>(ins.size()), static_cast<uint32_t>(outs.size()) };
		std::memcpy(slot.data(), &hdr, sizeof(hdr));
		std::byte *p = slot.data() + sizeof(hdr);
		for (const auto *list : { &ins, &outs })
			for (const auto &r : *list) {
				devemu_iovec v{ r.addr, r.len };
				std::memcpy(p, &v, sizeof(v));
				p += sizeof(v);
			}
		complete(sqe, 0, 0, DEVEMU_CQE_F_IOCTL_RETRY);
		return true;
	}
	case IoctlResult::Kind::Done:
		break;
	}
	if (restricted && call.needsRetry()) {
		if (std::find(warnedIoctls_.begin(), warnedIoctls_.end(), sqe.ioctl_cmd) == warnedIoctls_.end()) {
			warnedIoctls_.push_back(sqe.ioctl_cmd);
			DEVEMU_LOG(Warning, name_,
				   "ioctl {:#x} needs caller memory that this transport cannot carry (FUSE forwards only "
				   "size-encoded arguments); use CUSE or the kernel shim",
				   sqe.ioctl_cmd);
		}
	}
	auto out = call.output();
	uint32_t outLen = 0;
	if (result.ret >= 0 && !out.empty()) {
		outLen = static_cast<uint32_t>(std::min(out.size(), slot.size()));
		std::memcpy(slot.data(), out.data(), outLen);
	}
	complete(sqe, result.ret, outLen);
	return true;
}

void DeviceCore::runWakeups()
{
	while (dirty_) {
		dirty_ = false;
		for (auto it = parked_.begin(); it != parked_.end();) {
			if (attempt(*it))
				it = parked_.erase(it);
			else
				++it;
		}
	}
}

void DeviceCore::publishShadows()
{
	if (!shadowDirty_ || !model_)
		return;
	shadowDirty_ = false;
	uint32_t pulse = std::exchange(pulse_, 0);
	bool first = true;
	for (auto &f : files_) {
		if (!f)
			continue;
		uint32_t revents = model_->poll(*f);
		uint32_t readable = model_->readable(*f);
		uint32_t writable = model_->writable(*f);
		devemu_shadow_file &s = window_.fileShadow(f->fh);
		if (first) {
			/* The device-wide registers mirror the lowest open file (device-wide models see no difference). */
			first = false;
			devemu_shadow &d = window_.shadow();
			if (d.revents != revents || d.readable != readable || d.writable != writable)
				seqlockWrite(d, [&](devemu_shadow &b) {
					b.revents = revents;
					b.readable = readable;
					b.writable = writable;
				});
		}
		if (s.revents == revents && s.readable == readable && s.writable == writable && !(pulse & revents))
			continue;
		seqlockWrite(s, [&](devemu_shadow_file &b) {
			b.revents = revents;
			b.readable = readable;
			b.writable = writable;
		});
		pendingIsr_ |= DEVEMU_ISR_SHADOW;
	}
}

void DeviceCore::setStatusWord(unsigned index, uint32_t value)
{
	if (index >= 12)
		return;
	seqlockWrite(window_.shadow(), [&](devemu_shadow &b) { b.status[index] = value; });
	pendingIsr_ |= DEVEMU_ISR_SHADOW;
}

void DeviceCore::stop(int err)
{
	stopError_ = err;
	for (auto &req : parked_)
		complete(req.sqe, req.progress ? static_cast<int32_t>(req.progress) : err);
	parked_.clear();
	/* Wake poll waiters so they see the device go away. */
	if (!inDispatch_) {
		pendingIsr_ |= DEVEMU_ISR_SHADOW;
		dispatch();
	}
}

} // namespace devemu
