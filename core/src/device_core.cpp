// SPDX-License-Identifier: MIT
// DeviceCore: request dispatch, blocking semantics (park, wake, cancel), completions, shadow registers.
#include "devemu/device_core.h"

#include "devemu/log.h"

#include <asm-generic/ioctl.h>
#include <algorithm>
#include <cerrno>
#include <iterator>
#include <poll.h>

namespace devemu {

namespace {

/* The uapi's opcode list must be dense from 1: value - 1 indexes the per-operation arrays. */
constexpr bool opcodesDense()
{
	unsigned expected = 1;
	bool dense = true;
#define DEVEMU_OP_DENSE(op, value, name) dense = dense && (value) == expected++;
	DEVEMU_OPCODES(DEVEMU_OP_DENSE)
#undef DEVEMU_OP_DENSE
	return dense && expected == DEVEMU_OP_COUNT + 1;
}
static_assert(opcodesDense(), "the opcodes of the uapi list are not dense from 1");

constexpr const char *kOpNames[] = {
#define DEVEMU_OP_NAME(op, value, name) name,
	DEVEMU_OPCODES(DEVEMU_OP_NAME)
#undef DEVEMU_OP_NAME
};
static_assert(std::size(kOpNames) == DeviceStats::OpCount);

/* What a driver may set in an entry: the known flags, and 0 in every reserved field. */
bool reservedClear(const devemu_sqe &sqe)
{
	return !(sqe.flags & ~DEVEMU_SQE_F_ALL) && !sqe.rsvd0 && !sqe.rsvd1 && ((sqe.flags & DEVEMU_SQE_F_CAPS) || !sqe.caps);
}

/* Who makes the request the model is about to see: its pid and, where the driver reports them, its capabilities. */
void setCaller(OpenFile &f, const devemu_sqe &sqe)
{
	f.callerPid = static_cast<pid_t>(sqe.pid);
	f.callerCaps = (sqe.flags & DEVEMU_SQE_F_CAPS) ? std::optional<uint64_t>(sqe.caps) : std::nullopt;
}

} // namespace

const char *DeviceStats::opName(Op op)
{
	return op >= 0 && op < OpCount ? kOpNames[op] : "?";
}

DeviceCore::DeviceCore(Strand strand, std::string name) : strand_(std::move(strand)), name_(std::move(name)) {}

DeviceCore::DeviceCore(Strand strand, std::string name, Window &window) : DeviceCore(std::move(strand), std::move(name))
{
	attachWindow(window);
}

DeviceCore::~DeviceCore()
{
	for (auto &aw : windows_)
		for (auto &f : aw.files)
			if (f && model_)
				model_->release(*f);
}

unsigned DeviceCore::attachWindow(Window &window, InterruptHandler interrupt)
{
	devemu_regs &r = window.regs();
	uint64_t accept =
		DEVEMU_F_SHADOW_POLL | DEVEMU_F_IOCTL_RETRY | DEVEMU_F_CANCEL | DEVEMU_F_NEED_KICK | DEVEMU_F_CALLER_CAPS;
	bool streamRx = stream_.rx && window.rxFifoSize() && (r.features_offered & DEVEMU_F_STREAM);
	bool streamTx = stream_.tx && window.txFifoSize() && (r.features_offered & DEVEMU_F_STREAM);
	if (streamRx || streamTx)
		accept |= DEVEMU_F_STREAM;
	bool fileStreams = stream_.fileRecord && window.fileFifoCount() && (r.features_offered & DEVEMU_F_FILE_STREAM);
	if (fileStreams)
		accept |= DEVEMU_F_FILE_STREAM;
	r.features_accepted = r.features_offered & accept;
	std::atomic_ref<uint32_t>(r.status).fetch_or(DEVEMU_STATUS_ACKNOWLEDGE | DEVEMU_STATUS_DRIVER_OK);
	std::atomic_ref<uint32_t>(window.sq().flags).fetch_or(DEVEMU_RING_NEED_KICK);
	AttachedWindow aw;
	aw.window = &window;
	aw.interrupt = std::move(interrupt);
	aw.files.resize(std::min<uint32_t>(r.max_files, DEVEMU_MAX_FILES));
	aw.inflight.assign(window.queueDepth(), 0);
	aw.started.resize(window.queueDepth());
	aw.streamRx = streamRx;
	aw.streamTx = streamTx;
	uint32_t record = std::max<uint32_t>(stream_.record, 1);
	if (streamRx) {
		devemu_fifo &f = window.rxFifo();
		aw.rxTail = f.tail;
		aw.rxHeadSeen = f.head;
		f.record = record;
		f.watermark = rxWatermark(window);
	}
	if (streamTx) {
		devemu_fifo &f = window.txFifo();
		aw.txHead = f.head;
		f.record = record;
		f.watermark = txWatermark(window);
	}
	uint32_t loopCapacity = streamRx && streamTx ? window.rxFifo().capacity : 0;
	if (loopCapacity && loopCapacity != stream_.loopCapacity)
		DEVEMU_LOG(Warning, name_, "the driver made a loop of {} bytes; the model's is {}", loopCapacity,
			   stream_.loopCapacity);
	aw.loop = loopCapacity && stream_.loopCapacity;
	if (aw.loop) {
		aw.adjust = loopAdjust(aw);
		storeRelease(window.rxFifo().adjust, aw.adjust);
	}
	if (streamRx) {
		aw.rxDiscard = window.rxFifo().discard;
		aw.rxCallsSeen = window.rxFifo().calls;
	}
	if (streamTx)
		aw.txCallsSeen = window.txFifo().calls;
	if (fileStreams)
		attachFileFifos(aw);
	windows_.push_back(std::move(aw));
	publishDivert();
	return static_cast<unsigned>(windows_.size() - 1);
}

void DeviceCore::detachWindow(unsigned index)
{
	AttachedWindow &aw = windows_.at(index);
	for (auto it = parked_.begin(); it != parked_.end();)
		it = it->windowIndex == index ? parked_.erase(it) : std::next(it);
	for (auto it = delayed_.begin(); it != delayed_.end();)
		it = it->windowIndex == index ? delayed_.erase(it) : std::next(it);
	for (auto it = released_.begin(); it != released_.end();)
		it = it->first == index ? released_.erase(it) : std::next(it);
	for (auto &f : aw.files)
		if (f) {
			if (model_)
				model_->release(*f);
			f.reset();
		}
	aw.openCount = 0;
	aw.window = nullptr;
	aw.interrupt = nullptr;
	aw.pendingIsr = 0; /* raised by the releases above, for a driver that is gone */
	shadowDirty_ = true;
	notify();
}

size_t DeviceCore::openFiles() const
{
	size_t n = 0;
	for (const auto &aw : windows_)
		n += aw.openCount;
	return n;
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

void DeviceCore::consume(unsigned index)
{
	AttachedWindow &aw = windows_[index];
	if (!aw.window)
		return;
	Window &window = *aw.window;
	devemu_ring &sq = window.sq();
	std::atomic_ref<uint32_t> sqFlags(sq.flags);
	/* Awake: drivers need not ring. (Read first: a locked operation per request is not free.) */
	if (sqFlags.load(std::memory_order_relaxed) & DEVEMU_RING_NEED_KICK)
		sqFlags.fetch_and(~DEVEMU_RING_NEED_KICK);
	for (;;) {
		uint32_t head = sq.head;
		uint32_t tail = loadAcquire(sq.tail);
		if (head == tail) {
			if (spinning_)
				break; /* busy-polling: no doorbell wanted */
			/* Say we sleep, then look again: a driver that published meanwhile saw no flag. */
			sqFlags.fetch_or(DEVEMU_RING_NEED_KICK);
			std::atomic_thread_fence(std::memory_order_seq_cst);
			if (loadAcquire(sq.tail) == head)
				break;
			sqFlags.fetch_and(~DEVEMU_RING_NEED_KICK);
			continue;
		}
		if (tail - head > window.sqEntries()) {
			/* A producer index beyond the ring: skip to it rather than read garbage forever. */
			devemu_sqe bogus{};
			protocolError(bogus, "submission tail runs past the ring");
			storeRelease(sq.head, tail);
			continue;
		}
		devemu_sqe sqe = window.sqe(head);
		storeRelease(sq.head, head + 1);
		process(index, sqe);
		if (!aw.window)
			return; /* the window was detached while processing */
	}
}

void DeviceCore::dispatch()
{
	inDispatch_ = true;
	bool again;
	do {
		kicked_ = false;
		while (!released_.empty()) {
			auto [windowIndex, sqe] = released_.front();
			released_.pop_front();
			if (windows_[windowIndex].window)
				process(windowIndex, sqe, true);
		}
		for (unsigned i = 0; i < windows_.size(); i++)
			consume(i);
		runWakeups();
		for (auto &aw : windows_) {
			if (aw.window && (aw.streamRx || aw.streamTx))
				pumpStreams(aw);
			if (aw.window && !aw.fileFifos.empty())
				pumpFileStreams(aw);
		}
		publishShadows();
		for (auto &aw : windows_) {
			if (!aw.pendingIsr || !aw.window)
				continue;
			uint32_t isr = std::exchange(aw.pendingIsr, 0);
			std::atomic_ref<uint32_t>(aw.window->regs().isr).fetch_or(isr);
			if (aw.interrupt)
				aw.interrupt(isr);
		}
		/* Go round again only if the interrupt handlers submitted or something changed. */
		again = kicked_ || dirty_ || !released_.empty();
		for (const auto &aw : windows_)
			again = again || aw.pendingIsr;
	} while (again);
	inDispatch_ = false;
}

void DeviceCore::complete(unsigned index, const devemu_sqe &sqe, int32_t result, uint32_t aux, uint16_t flags)
{
	AttachedWindow &aw = windows_[index];
	if (!aw.window)
		return;
	Window &window = *aw.window;
	devemu_ring &cq = window.cq();
	uint32_t tail = cq.tail;
	if (tail - loadAcquire(cq.head) >= window.queueDepth()) {
		/* Cannot happen with one completion per tag; refuse to overwrite unread entries. */
		DEVEMU_LOG(Error, name_, "completion ring full, dropping completion of tag {}", sqe.tag);
		return;
	}
	devemu_cqe &cqe = window.cqe(tail);
	cqe.tag = sqe.tag;
	cqe.result = result;
	cqe.aux = aux;
	cqe.epoch = static_cast<uint16_t>(sqe.epoch);
	cqe.flags = flags;
	storeRelease(cq.tail, tail + 1);
	if (sqe.tag < aw.inflight.size() && aw.inflight[sqe.tag]) {
		aw.inflight[sqe.tag] = 0;
		auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
										aw.started[sqe.tag])
				  .count();
		size_t bucket = 0;
		while (bucket + 1 < DeviceStats::kLatencyBuckets && us >= (int64_t(1) << bucket))
			bucket++;
		if (DeviceStats::isOpcode(sqe.opcode))
			stats_.latency[DeviceStats::opOf(sqe.opcode)][bucket]++;
	}
	if (result < 0 && DeviceStats::isOpcode(sqe.opcode))
		stats_.errors[DeviceStats::opOf(sqe.opcode)]++;
	aw.pendingIsr |= DEVEMU_ISR_CQ;
}

void DeviceCore::process(unsigned index, const devemu_sqe &submitted, bool faultsApplied)
{
	devemu_sqe sqe = submitted;
	AttachedWindow &aw = windows_[index];
	Window &window = *aw.window;
	if (sqe.tag >= window.queueDepth())
		return protocolError(sqe, "tag out of range");
	if (!DeviceStats::isOpcode(sqe.opcode))
		return protocolError(sqe, "unknown opcode");
	if (!faultsApplied)
		stats_.requests[DeviceStats::opOf(sqe.opcode)]++;

	if (sqe.opcode == DEVEMU_OP_CANCEL) {
		if (!reservedClear(sqe))
			return protocolError(sqe, "reserved bits set in a cancel");
		/* A cancel shares its target's tag: end the parked request; if none, it already completed. */
		for (auto it = parked_.begin(); it != parked_.end(); ++it) {
			if (it->windowIndex != index || it->sqe.tag != sqe.tag)
				continue;
			stats_.cancelled++;
			int32_t result = it->progress ? static_cast<int32_t>(it->progress) : -EINTR;
			complete(index, it->sqe, result);
			parked_.erase(it);
			return;
		}
		for (auto it = delayed_.begin(); it != delayed_.end(); ++it) {
			if (it->windowIndex != index || it->sqe.tag != sqe.tag)
				continue;
			stats_.cancelled++;
			complete(index, it->sqe, -EINTR);
			delayed_.erase(it);
			return;
		}
		return;
	}
	if (!faultsApplied) {
		if (aw.inflight[sqe.tag])
			return protocolError(sqe, "tag already in flight");
		aw.inflight[sqe.tag] = 1;
		aw.started[sqe.tag] = std::chrono::steady_clock::now();
		/* A flag or field this core does not know: refuse rather than guess what it asks for. */
		if (!reservedClear(sqe))
			return complete(index, sqe, -EINVAL);
		if (!faults_.empty() && !stopError_ && applyFault(index, sqe))
			return;
	}

	if (stopError_)
		return complete(index, sqe, sqe.opcode == DEVEMU_OP_OPEN ? -ENODEV : stopError_);
	if (!model_)
		return complete(index, sqe, -ENODEV);

	if (sqe.opcode == DEVEMU_OP_OPEN) {
		uint32_t fh = 0;
		while (fh < aw.files.size() && aw.files[fh])
			fh++;
		if (fh == aw.files.size())
			return complete(index, sqe, -ENFILE);
		auto f = std::make_unique<OpenFile>();
		f->fh = fh;
		f->flags = sqe.open_flags;
		f->pid = static_cast<pid_t>(sqe.pid);
		f->uid = sqe.uid;
		f->gid = sqe.gid;
		f->compat = sqe.flags & DEVEMU_SQE_F_COMPAT;
		setCaller(*f, sqe);
		int ret = model_->open(*f);
		if (ret < 0)
			return complete(index, sqe, ret);
		aw.files[fh] = std::move(f);
		aw.openCount++;
		openFileFifo(aw, fh);
		stats_.opens++;
		/* A fresh file starts with a clean shadow entry; publishShadows fills it. */
		seqlockWrite(window.fileShadow(fh),
			     [](devemu_shadow_file &s) { s.revents = s.readable = s.writable = 0; });
		shadowDirty_ = true;
		return complete(index, sqe, static_cast<int32_t>(fh));
	}

	OpenFile *f = sqe.fh < aw.files.size() ? aw.files[sqe.fh].get() : nullptr;
	if (!f)
		return complete(index, sqe, -EBADF);

	switch (sqe.opcode) {
	case DEVEMU_OP_RELEASE: {
		/* The driver releases only idle files; end anything left so no tag leaks. */
		for (auto it = parked_.begin(); it != parked_.end();) {
			if (it->windowIndex == index && it->sqe.fh == sqe.fh) {
				complete(index, it->sqe, -EBADF);
				it = parked_.erase(it);
			} else {
				++it;
			}
		}
		model_->release(*f);
		aw.files[sqe.fh].reset();
		aw.openCount--;
		shadowDirty_ = true;
		return complete(index, sqe, 0);
	}
	case DEVEMU_OP_POLL: {
		uint32_t revents = model_->poll(*f) & (sqe.out_len | POLLERR | POLLHUP | POLLNVAL);
		return complete(index, sqe, 0, revents);
	}
	case DEVEMU_OP_READ:
	case DEVEMU_OP_WRITE:
	case DEVEMU_OP_IOCTL: {
		if (sqe.len > window.slotSize() || sqe.out_len > window.slotSize())
			return complete(index, sqe, -EINVAL);
		/* What was posted before this call is the model's first (tcdrain waits for it, TIOCOUTQ counts it). */
		if (aw.streamTx)
			pumpTx(aw);
		Request req{ index, sqe };
		if (!attempt(req)) {
			stats_.parked++;
			parked_.push_back(req);
		}
		return;
	}
	}
}

bool DeviceCore::attempt(Request &req)
{
	const devemu_sqe &sqe = req.sqe;
	AttachedWindow &aw = windows_[req.windowIndex];
	OpenFile &f = *aw.files[sqe.fh];
	bool nonblock = sqe.flags & DEVEMU_SQE_F_NONBLOCK;
	std::span<std::byte> slot = aw.window->slot(sqe.tag);
	/* Reads and writes carry the file's current flags (fcntl may have changed O_NONBLOCK since open). */
	if (sqe.opcode == DEVEMU_OP_READ || sqe.opcode == DEVEMU_OP_WRITE)
		f.flags = sqe.open_flags;
	/* The file may be shared by a 32-bit and a 64-bit process: each request says which one calls. */
	f.compat = sqe.flags & DEVEMU_SQE_F_COMPAT;
	setCaller(f, sqe);
	/* The driver holds the file's FIFO meanwhile: the model sees the file's whole queue. */
	if (sqe.opcode == DEVEMU_OP_READ || sqe.opcode == DEVEMU_OP_IOCTL)
		takeBackFileFifo(aw, f);

	switch (sqe.opcode) {
	case DEVEMU_OP_READ: {
		ssize_t n = aw.streamRx ? streamRead(aw, f, slot.first(sqe.len)) : modelRead(f, slot.first(sqe.len));
		if (n == -EAGAIN && !nonblock)
			return false;
		if (n > 0)
			stats_.bytesOut += static_cast<uint64_t>(n);
		/* Before the caller can see its answer: the bytes it took are no longer in flight. */
		if (aw.loop)
			publishLoopAdjust(aw);
		complete(req.windowIndex, sqe, static_cast<int32_t>(n));
		return true;
	}
	case DEVEMU_OP_WRITE: {
		/* A loop's diverted write goes in after the bytes posted to its transmit FIFO. */
		bool posted = aw.loop && aw.streamTx && !pumpTx(aw);
		/* Pipe semantics: a blocking write completes when every byte was accepted. */
		while (!posted && req.progress < sqe.len) {
			ssize_t n = modelWrite(f, slot.subspan(req.progress, sqe.len - req.progress));
			if (n == -EAGAIN || n == 0)
				break;
			if (n < 0) {
				complete(req.windowIndex, sqe,
					 req.progress ? static_cast<int32_t>(req.progress) : static_cast<int32_t>(n));
				return true;
			}
			req.progress += static_cast<uint32_t>(n);
			stats_.bytesIn += static_cast<uint64_t>(n);
		}
		/* Before the writer can see its answer: a read after it counts the bytes in flight. */
		if (aw.loop)
			publishLoopAdjust(aw);
		if (req.progress == sqe.len || nonblock) {
			complete(req.windowIndex, sqe, req.progress ? static_cast<int32_t>(req.progress) : -EAGAIN);
			return true;
		}
		return false;
	}
	case DEVEMU_OP_IOCTL:
		return attemptIoctl(req, f);
	}
	return true;
}

bool DeviceCore::coreIoctl(IoctlCall &call, unsigned windowIndex, OpenFile &file, IoctlResult &result)
{
	switch (call.cmd()) {
	case DEVEMU_IOC_COUNTERS: {
		/* Bytes posted to or read from the stream FIFOs since the last look count too. */
		for (auto &aw : windows_) {
			if (aw.window && (aw.streamRx || aw.streamTx))
				pumpStreams(aw);
			if (aw.window)
				countFileFifoCalls(aw);
		}
		devemu_counters c{};
		c.bytes_in = stats_.bytesIn;
		c.bytes_out = stats_.bytesOut;
		c.opens = stats_.opens;
		c.dropped = model_->dropped();
		result = call.replyArg(c);
		return true;
	}
	case DEVEMU_IOC_NREAD: {
		AttachedWindow &aw = windows_[windowIndex];
		if (aw.loop) {
			/* A loop's readers see every byte in flight through this window, as FIONREAD does. */
			pumpStreams(aw);
			result = call.replyArg(static_cast<uint32_t>(model_->buffered() + loopFifoBytes(&aw)));
		} else {
			result = call.replyArg(static_cast<uint32_t>(model_->readable(file)));
		}
		return true;
	}
	default:
		return false;
	}
}

bool DeviceCore::attemptIoctl(Request &req, OpenFile &f)
{
	const devemu_sqe &sqe = req.sqe;
	std::span<std::byte> slot = windows_[req.windowIndex].window->slot(sqe.tag);
	bool restricted = sqe.flags & DEVEMU_SQE_F_IOCTL_RESTRICTED;
	/* The input lives in the slot that the output overwrites: work on a copy of it. */
	std::vector<std::byte> in(slot.begin(), slot.begin() + sqe.len);
	IoctlCall call(sqe.ioctl_cmd, sqe.ioctl_arg, in, sqe.out_len, restricted);
	call.setCompat(sqe.flags & DEVEMU_SQE_F_COMPAT);
	IoctlResult result;
	if (!coreIoctl(call, req.windowIndex, f, result))
		result = model_->ioctl(f, call);

	switch (result.kind) {
	case IoctlResult::Kind::WouldBlock:
		/* Waiting ioctls (tcdrain, TCSETSW) wait even on O_NONBLOCK files, as in the kernel; a model
		 * that wants EAGAIN for those returns it itself. */
		return false;
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
			complete(req.windowIndex, sqe, -EINVAL);
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
		complete(req.windowIndex, sqe, 0, 0, DEVEMU_CQE_F_IOCTL_RETRY);
		return true;
	}
	case IoctlResult::Kind::Done:
		break;
	}
	if (restricted && call.needsRetry() &&
	    std::find(warnedIoctls_.begin(), warnedIoctls_.end(), sqe.ioctl_cmd) == warnedIoctls_.end()) {
		warnedIoctls_.push_back(sqe.ioctl_cmd);
		DEVEMU_LOG(Warning, name_,
			   "ioctl {:#x} needs caller memory that this transport cannot carry (FUSE forwards only "
			   "size-encoded arguments); use CUSE or the kernel shim",
			   sqe.ioctl_cmd);
	}
	auto out = call.output();
	uint32_t outLen = 0;
	if (result.ret >= 0 && !out.empty()) {
		outLen = static_cast<uint32_t>(std::min(out.size(), slot.size()));
		std::memcpy(slot.data(), out.data(), outLen);
	}
	complete(req.windowIndex, sqe, result.ret, outLen);
	return true;
}

ssize_t DeviceCore::streamRead(AttachedWindow &aw, OpenFile &file, std::span<std::byte> out)
{
	Window &w = *aw.window;
	devemu_fifo &f = w.rxFifo();
	std::span<std::byte> data = w.rxFifoData();
	const uint32_t size = static_cast<uint32_t>(data.size());
	/* What was written before this read is in the model or rx, not in tx. */
	if (aw.streamTx)
		pumpTx(aw);
	/* The driver holds rx.lock for this read: its head stays; a discard not yet acted on counts as it. */
	uint32_t head = loadAcquire(f.head);
	if (aw.rxDiscard - head <= aw.rxTail - head)
		head = aw.rxDiscard;
	uint32_t fill = aw.rxTail - head;
	if (fill > size)
		fill = 0; /* out of range: the pumps report it */
	uint32_t n = static_cast<uint32_t>(std::min<size_t>(fill, out.size()));
	uint32_t off = head & (size - 1);
	uint32_t first = std::min(n, size - off);
	std::memcpy(out.data(), data.data() + off, first);
	std::memcpy(out.data() + first, data.data(), n - first);
	if (n) {
		aw.rxSkipped += n; /* counted as this request's, not again when the head passes them */
		storeRelease(f.discard, aw.rxDiscard = head + n);
		aw.pendingIsr |= DEVEMU_ISR_STREAM;
	}
	/* A loop reads on as a pipe does; else the FIFO's bytes are the read, as n_tty's pending bytes. */
	if (n == out.size() || (n && !aw.loop))
		return n;
	ssize_t more = modelRead(file, out.subspan(n));
	return more > 0 ? n + more : n ? static_cast<ssize_t>(n) : more;
}

ssize_t DeviceCore::modelRead(OpenFile &file, std::span<std::byte> out)
{
	if (!stream_.rx || modelDivertRx_)
		return model_->read(file, out);
	uint32_t record = std::max<uint32_t>(stream_.record, 1);
	if (out.size() < record)
		return -EINVAL;
	size_t n = model_->produce(out.first(out.size() - out.size() % record));
	return n ? static_cast<ssize_t>(n) : pollingReads_ && !stream_.loopCapacity ? 0 : -EAGAIN;
}

ssize_t DeviceCore::modelWrite(OpenFile &file, std::span<const std::byte> in)
{
	if (!stream_.tx || modelDivertTx_)
		return model_->write(file, in);
	uint32_t record = std::max<uint32_t>(stream_.record, 1);
	if (in.size() < record)
		return -EINVAL;
	in = in.first(in.size() - in.size() % record);
	if (size_t capacity = stream_.loopCapacity) {
		/* A loop counts the bytes in the kernel shim's FIFOs too; up to capacity, all or nothing. */
		size_t held = model_->buffered() + loopFifoBytes();
		size_t space = capacity > held ? capacity - held : 0;
		size_t n = in.size() <= capacity ? (in.size() <= space ? in.size() : 0) : space;
		in = in.first(n - n % record);
		if (in.empty())
			return -EAGAIN;
	}
	size_t n = model_->consume(in);
	return n ? static_cast<ssize_t>(n) : -EAGAIN;
}

uint32_t DeviceCore::rxFifoBytes(const AttachedWindow &aw)
{
	uint32_t rx = aw.rxTail - loadAcquire(aw.window->rxFifo().head);
	/* Out-of-range indices are the pumps' to report; they count as nothing here. */
	return rx <= aw.window->rxFifoSize() ? rx : 0;
}

uint32_t DeviceCore::txFifoBytes(const AttachedWindow &aw)
{
	uint32_t tx = loadAcquire(aw.window->txFifo().tail) - aw.txHead;
	return tx <= aw.window->txFifoSize() ? tx : 0;
}

size_t DeviceCore::loopFifoBytes(const AttachedWindow *only) const
{
	size_t bytes = 0;
	for (const auto &aw : windows_)
		if (aw.window && aw.loop && (!only || &aw == only))
			bytes += rxFifoBytes(aw) + txFifoBytes(aw);
	return bytes;
}

size_t DeviceCore::discardStream()
{
	/* Called by the model: consume()'s notify() must not start a pass over the FIFOs inside this one. */
	bool wasInDispatch = std::exchange(inDispatch_, true);
	size_t dropped = 0;
	for (auto &aw : windows_) {
		if (!aw.window || !aw.streamRx)
			continue;
		if (aw.loop)
			pumpTx(aw);
		uint32_t bytes = rxFifoBytes(aw);
		dropped += bytes;
		aw.rxSkipped += bytes; /* dropped, not read: the head passes them uncounted */
		storeRelease(aw.window->rxFifo().discard, aw.rxDiscard = aw.rxTail);
		aw.pendingIsr |= DEVEMU_ISR_STREAM;
	}
	inDispatch_ = wasInDispatch;
	return dropped;
}

size_t DeviceCore::discardStreamTx()
{
	size_t dropped = 0;
	for (auto &aw : windows_) {
		if (!aw.window || !aw.streamTx)
			continue;
		uint32_t bytes = txFifoBytes(aw);
		if (!bytes)
			continue;
		dropped += bytes;
		storeRelease(aw.window->txFifo().head, aw.txHead += bytes);
		aw.pendingIsr |= DEVEMU_ISR_STREAM;
	}
	return dropped;
}

size_t DeviceCore::streamTxPending() const
{
	size_t bytes = 0;
	for (const auto &aw : windows_)
		if (aw.window && aw.streamTx)
			bytes += txFifoBytes(aw);
	return bytes;
}

void DeviceCore::divertStream(bool rx, bool tx)
{
	if (rx == modelDivertRx_ && tx == modelDivertTx_)
		return;
	modelDivertRx_ = rx;
	modelDivertTx_ = tx;
	publishDivert();
	/* Readiness of a diverted direction is the model's again: republished, as parked calls are
	 * retried, when the core next runs (the model's notify(), or the end of its request). */
	dirty_ = true;
	shadowDirty_ = true;
}

void DeviceCore::streamPollingReads(bool on)
{
	if (on == pollingReads_)
		return;
	pollingReads_ = on;
	publishDivert();
	dirty_ = true; /* parked reads of an empty stream now end with 0 */
}

uint32_t DeviceCore::loopAdjust(const AttachedWindow &aw) const
{
	return static_cast<uint32_t>(model_->buffered()) + aw.rxTail - aw.txHead;
}

void DeviceCore::publishLoopAdjust(AttachedWindow &aw)
{
	uint32_t adjust = loopAdjust(aw);
	if (adjust == aw.adjust)
		return;
	aw.adjust = adjust;
	storeRelease(aw.window->rxFifo().adjust, adjust);
	aw.pendingIsr |= DEVEMU_ISR_STREAM;
}

void DeviceCore::countRxHead(AttachedWindow &aw, uint32_t head)
{
	/* A head outside what we published is not counted (pumpRx reports it). */
	if (head - aw.rxHeadSeen > aw.rxTail - aw.rxHeadSeen)
		return;
	uint32_t moved = head - aw.rxHeadSeen;
	uint32_t skipped = std::min(moved, aw.rxSkipped);
	aw.rxSkipped -= skipped;
	stats_.bytesOut += moved - skipped;
	aw.rxHeadSeen = head;
}

/*
 * rx: fills the FIFO's free space from produce(), whole records; a record that
 * straddles the ring's end goes through a bounce buffer. Returns true when the
 * FIFO is left above its watermark with the model having more (a kick is
 * wanted when the reader drains it).
 */
bool DeviceCore::pumpRx(AttachedWindow &aw)
{
	Window &w = *aw.window;
	devemu_fifo &f = w.rxFifo();
	std::span<std::byte> data = w.rxFifoData();
	const uint32_t size = static_cast<uint32_t>(data.size());
	const uint32_t record = std::max<uint32_t>(stream_.record, 1);
	uint32_t head = loadAcquire(f.head);
	countRxHead(aw, head);
	/* Diverted by the model: its reads come by request, from read(). */
	if (modelDivertRx_)
		return false;
	for (;;) {
		uint32_t fill = aw.rxTail - head;
		if (fill > size) {
			DEVEMU_LOG(Error, name_, "receive FIFO head {} out of range (tail {})", head, aw.rxTail);
			return false;
		}
		uint32_t space = size - fill;
		if (space < record)
			return true; /* full: the model may have more */
		uint32_t off = aw.rxTail & (size - 1);
		uint32_t want = std::min(space, size - off);
		want -= want % record;
		size_t n;
		if (want && stream_.constantRx && aw.rxProduced >= size) {
			n = want; /* every byte of the ring is already the model's only byte value */
		} else if (want) {
			n = model_->produce(data.subspan(off, want));
			aw.rxProduced += n;
		} else {
			std::vector<std::byte> bounce(record);
			n = model_->produce(bounce);
			if (n == record) {
				size_t first = size - off;
				std::memcpy(data.data() + off, bounce.data(), first);
				std::memcpy(data.data(), bounce.data() + first, record - first);
			}
		}
		n -= n % record;
		if (!n)
			return false; /* the model has nothing now: its notify() brings us back */
		storeRelease(f.tail, aw.rxTail += static_cast<uint32_t>(n));
		aw.pendingIsr |= DEVEMU_ISR_STREAM;
		head = loadAcquire(f.head);
		countRxHead(aw, head);
	}
}

/* tx: hands the FIFO's bytes to consume(). Returns true when the model took all there was. */
bool DeviceCore::pumpTx(AttachedWindow &aw)
{
	Window &w = *aw.window;
	devemu_fifo &f = w.txFifo();
	std::span<std::byte> data = w.txFifoData();
	const uint32_t size = static_cast<uint32_t>(data.size());
	const uint32_t record = std::max<uint32_t>(stream_.record, 1);
	for (;;) {
		uint32_t fill = loadAcquire(f.tail) - aw.txHead;
		if (fill > size) {
			DEVEMU_LOG(Error, name_, "transmit FIFO tail out of range (head {})", aw.txHead);
			return false;
		}
		if (fill < record)
			return true;
		uint32_t off = aw.txHead & (size - 1);
		uint32_t avail = std::min(fill, size - off);
		avail -= avail % record;
		size_t n;
		if (avail) {
			n = model_->consume(data.subspan(off, avail));
		} else {
			std::vector<std::byte> bounce(record);
			size_t first = size - off;
			std::memcpy(bounce.data(), data.data() + off, first);
			std::memcpy(bounce.data() + first, data.data(), record - first);
			n = model_->consume(bounce);
			avail = record;
		}
		n -= n % record;
		if (n) {
			storeRelease(f.head, aw.txHead += static_cast<uint32_t>(n));
			stats_.bytesIn += n;
			aw.pendingIsr |= DEVEMU_ISR_STREAM;
		}
		if (n < avail)
			return false; /* the model is full: its notify() brings us back */
	}
}

/*
 * One pass over a window's FIFOs, then the kick protocol: say we want a kick,
 * fence, and look again, so that a driver that moved an index meanwhile
 * either saw the request or is seen here.
 */
void DeviceCore::pumpStreams(AttachedWindow &aw)
{
	Window &w = *aw.window;
	const uint32_t record = std::max<uint32_t>(stream_.record, 1);
	/* Before the rx tail moves: readers then wait for injected bytes rather than miss them. */
	if (aw.loop)
		publishLoopAdjust(aw);
	for (;;) {
		bool again = false;
		if (aw.streamTx) {
			devemu_fifo &f = w.txFifo();
			bool drained = pumpTx(aw);
			std::atomic_ref<uint32_t>(f.kick).store(drained ? 1 : 0, std::memory_order_relaxed);
			std::atomic_thread_fence(std::memory_order_seq_cst);
			/* Our own watermark, not the window's copy: a driver cannot make us spin. */
			uint32_t fill = loadAcquire(f.tail) - aw.txHead;
			again |= drained && fill <= w.txFifoSize() && fill >= std::max(record, txWatermark(w));
		}
		if (aw.streamRx) {
			devemu_fifo &f = w.rxFifo();
			bool more = pumpRx(aw);
			std::atomic_ref<uint32_t>(f.kick).store(more ? 1 : 0, std::memory_order_relaxed);
			std::atomic_thread_fence(std::memory_order_seq_cst);
			uint32_t fill = aw.rxTail - loadAcquire(f.head);
			again |= more && fill <= w.rxFifoSize() - record && fill <= rxWatermark(w);
		}
		if (aw.loop)
			publishLoopAdjust(aw);
		if (!again)
			return;
	}
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
	for (auto &aw : windows_) {
		if (!aw.window)
			continue;
		for (auto &f : aw.files) {
			if (!f)
				continue;
			uint32_t revents = model_->poll(*f);
			uint32_t readable = model_->readable(*f);
			uint32_t writable = model_->writable(*f);
			/* A direction served from a stream FIFO has the driver's readiness, not the model's:
			 * its bits stay out of the shadow, so bytes moving through wake no poller. A
			 * direction the model diverted has the model's. */
			if (aw.streamRx && !modelDivertRx_) {
				revents &= ~(POLLIN | POLLRDNORM);
				readable = 0;
			}
			if (aw.streamTx && !modelDivertTx_) {
				revents &= ~(POLLOUT | POLLWRNORM);
				writable = 0;
			}
			if (fileFifoServes(aw, f->fh)) {
				revents &= ~(POLLIN | POLLRDNORM);
				readable = 0;
			}
			devemu_shadow_file &s = aw.window->fileShadow(f->fh);
			if (s.revents == revents && s.readable == readable && s.writable == writable &&
			    !(pulse & revents))
				continue;
			seqlockWrite(s, [&](devemu_shadow_file &b) {
				b.revents = revents;
				b.readable = readable;
				b.writable = writable;
			});
			aw.pendingIsr |= DEVEMU_ISR_SHADOW;
		}
	}
}

void DeviceCore::setStatusWord(unsigned index, uint32_t value)
{
	if (index >= DEVEMU_STATUS_WORDS)
		return;
	for (auto &aw : windows_) {
		if (!aw.window)
			continue;
		seqlockWrite(aw.window->shadow(), [&](devemu_shadow &b) { b.status[index] = value; });
		aw.pendingIsr |= DEVEMU_ISR_SHADOW;
	}
}

void DeviceCore::busyPoll(std::chrono::microseconds budget)
{
	if (inDispatch_ || budget.count() <= 0)
		return;
	spinning_ = true;
	auto deadline = std::chrono::steady_clock::now() + budget;
	while (std::chrono::steady_clock::now() < deadline) {
		bool work = false;
		for (auto &aw : windows_)
			if (aw.window && loadAcquire(aw.window->sq().tail) != aw.window->sq().head)
				work = true;
		if (work) {
			dispatch();
			deadline = std::chrono::steady_clock::now() + budget;
		} else {
			__builtin_ia32_pause();
		}
	}
	spinning_ = false;
	/* Ask for doorbells again, and catch what arrived while we stopped looking. */
	dispatch();
}

void DeviceCore::setFault(const FaultSpec &fault)
{
	std::erase_if(faults_, [&](const FaultSpec &f) { return f.op == fault.op; });
	faults_.push_back(fault);
	publishDivert();
	if (!inDispatch_)
		dispatch(); /* raises the interrupt that sends FIFO waiters to requests */
}

void DeviceCore::clearFaults()
{
	faults_.clear();
	publishDivert();
	if (!inDispatch_)
		dispatch();
}

std::vector<FaultSpec>::iterator DeviceCore::findFault(DeviceStats::Op op)
{
	return std::find_if(faults_.begin(), faults_.end(), [op](const FaultSpec &f) { return f.op == op; });
}

void DeviceCore::publishDivert()
{
	uint32_t read = modelDivertRx_ || findFault(DeviceStats::Read) != faults_.end();
	uint32_t write = modelDivertTx_ || findFault(DeviceStats::Write) != faults_.end();
	for (auto &aw : windows_) {
		if (!aw.window)
			continue;
		/* A change wakes the callers blocked on the FIFO: they go on as requests. */
		if (aw.streamRx && aw.rxDivert != read) {
			storeRelease(aw.window->rxFifo().divert, aw.rxDivert = read);
			aw.pendingIsr |= DEVEMU_ISR_STREAM;
		}
		if (aw.streamTx && aw.txDivert != write) {
			storeRelease(aw.window->txFifo().divert, aw.txDivert = write);
			aw.pendingIsr |= DEVEMU_ISR_STREAM;
		}
		/* Readers waiting on an empty FIFO end with 0 when polling reads begin. */
		uint32_t nowait = pollingReads_ && !aw.loop;
		if (aw.streamRx && aw.rxNoWait != nowait) {
			storeRelease(aw.window->rxFifo().nowait, aw.rxNoWait = nowait);
			aw.pendingIsr |= DEVEMU_ISR_STREAM;
		}
		for (uint32_t fh = 0; fh < aw.fileFifos.size(); fh++)
			publishFileDivert(aw, fh);
	}
}

const DeviceStats &DeviceCore::stats()
{
	for (auto &aw : windows_) {
		if (!aw.window)
			continue;
		/* Bytes the driver read since the last pass (pumpRx counts them the same way). */
		if (aw.streamRx)
			countRxHead(aw, loadAcquire(aw.window->rxFifo().head));
		auto count = [this](DeviceStats::Op op, const devemu_fifo &f, uint32_t &seen) {
			uint32_t calls = loadAcquire(f.calls);
			uint32_t n = calls - std::exchange(seen, calls);
			stats_.requests[op] += n;
			stats_.inKernel[op] += n;
		};
		if (aw.streamRx)
			count(DeviceStats::Read, aw.window->rxFifo(), aw.rxCallsSeen);
		if (aw.streamTx)
			count(DeviceStats::Write, aw.window->txFifo(), aw.txCallsSeen);
		countFileFifoCalls(aw);
	}
	return stats_;
}

size_t DeviceCore::waitingCalls() const
{
	/* The driver's counts, clamped: a window's word moves a number, nothing else. */
	constexpr uint32_t kMaxWaiters = 1U << 20;
	size_t n = parked_.size();
	for (const auto &aw : windows_) {
		if (!aw.window)
			continue;
		if (aw.streamRx)
			n += std::min(loadAcquire(aw.window->rxFifo().waiters), kMaxWaiters);
		if (aw.streamTx)
			n += std::min(loadAcquire(aw.window->txFifo().waiters), kMaxWaiters);
		n += fileFifoWaiters(aw);
	}
	return n;
}

bool DeviceCore::applyFault(unsigned index, devemu_sqe &sqe)
{
	if (sqe.opcode > DEVEMU_OP_POLL)
		return false;
	auto it = findFault(DeviceStats::opOf(sqe.opcode));
	if (it == faults_.end())
		return false;
	FaultSpec fault = *it;
	it->hits++;
	if (it->count > 0 && --it->count == 0) {
		faults_.erase(it);
		publishDivert();
	}
	if (fault.error) {
		complete(index, sqe, -fault.error);
		return true;
	}
	if (fault.shortLen && (sqe.opcode == DEVEMU_OP_READ || sqe.opcode == DEVEMU_OP_WRITE))
		sqe.len = std::min(sqe.len, *fault.shortLen);
	if (fault.delay.count() > 0) {
		auto timer = std::make_unique<asio::steady_timer>(strand_, fault.delay);
		asio::steady_timer *t = timer.get();
		delayed_.push_back({ index, sqe, std::move(timer) });
		t->async_wait([this, t](const boost::system::error_code &ec) {
			if (ec)
				return;
			auto d = std::find_if(delayed_.begin(), delayed_.end(),
					      [t](const Delayed &x) { return x.timer.get() == t; });
			if (d == delayed_.end())
				return;
			released_.emplace_back(d->windowIndex, d->sqe);
			delayed_.erase(d);
			if (!inDispatch_)
				dispatch();
			else
				kicked_ = true;
		});
		return true;
	}
	return false;
}

int DeviceCore::inject(const std::vector<std::string> &args, std::string &reply)
{
	if (!model_) {
		reply = "no model";
		return -ENODEV;
	}
	int ret = model_->inject(args, reply);
	/* The model's notify() already woke waiters; make sure shadows are out. */
	if (!inDispatch_)
		dispatch();
	return ret;
}

void DeviceCore::stop(int err)
{
	stopError_ = err;
	for (auto &req : parked_)
		complete(req.windowIndex, req.sqe, req.progress ? static_cast<int32_t>(req.progress) : err);
	parked_.clear();
	for (auto &d : delayed_)
		complete(d.windowIndex, d.sqe, err);
	delayed_.clear();
	for (auto &[windowIndex, sqe] : released_)
		complete(windowIndex, sqe, err);
	released_.clear();
	/* Wake poll waiters so they see the device go away. */
	for (auto &aw : windows_)
		aw.pendingIsr |= DEVEMU_ISR_SHADOW;
	if (!inDispatch_)
		dispatch();
}

} // namespace devemu
