// SPDX-License-Identifier: MIT
// The core's side of the per-file receive FIFOs (uapi: Per-file receive FIFOs): a model with a queue per
// open file (StreamSpec::fileRecord, evdev) has each file's records moved into that file's own FIFO, where
// the kernel shim serves its read() without a request; before a request of the file reaches the model the
// records go back to the head of its queue, so read() and ioctl() always see the whole queue.
#include "devemu/device_core.h"

#include "devemu/log.h"

#include <cstring>
#include <vector>

namespace devemu {

void DeviceCore::attachFileFifos(AttachedWindow &aw)
{
	Window &w = *aw.window;
	const uint32_t record = std::min(stream_.fileRecord, w.fileFifoSize());
	aw.fileFifos.resize(std::min<size_t>(w.fileFifoCount(), aw.files.size()));
	for (uint32_t fh = 0; fh < aw.fileFifos.size(); fh++) {
		devemu_fifo &f = w.fileFifo(fh);
		FileFifo &ff = aw.fileFifos[fh];
		/* A window we did not create may carry indices (a test's); a kernel shim's starts at 0. */
		ff.tail = f.tail;
		ff.headSeen = f.head;
		ff.discard = f.discard;
		ff.callsSeen = f.calls;
		ff.divert = f.divert;
		f.record = record;
		f.compat_record = stream_.fileRecordCompat;
		f.watermark = w.fileFifoSize() / 2;
	}
}

uint32_t DeviceCore::fileFifoHead(const AttachedWindow &aw, uint32_t fh) const
{
	const FileFifo &ff = aw.fileFifos[fh];
	uint32_t head = loadAcquire(aw.window->fileFifo(fh).head);
	/* A discard between the head and the tail is where the driver's head goes next. */
	if (ff.discard - head <= ff.tail - head)
		head = ff.discard;
	return head;
}

bool DeviceCore::fileFifoServes(const AttachedWindow &aw, uint32_t fh) const
{
	return fh < aw.fileFifos.size() && !aw.fileFifos[fh].divert;
}

void DeviceCore::countFileHead(FileFifo &ff, uint32_t head)
{
	/* A head outside what we published is not counted (the pump reports it). */
	if (head - ff.headSeen > ff.tail - ff.headSeen)
		return;
	uint32_t moved = head - ff.headSeen;
	uint32_t skipped = std::min(moved, ff.skipped);
	ff.skipped -= skipped;
	stats_.bytesOut += moved - skipped;
	ff.headSeen = head;
}

void DeviceCore::openFileFifo(AttachedWindow &aw, uint32_t fh)
{
	if (fh >= aw.fileFifos.size())
		return;
	FileFifo &ff = aw.fileFifos[fh];
	devemu_fifo &f = aw.window->fileFifo(fh);
	countFileHead(ff, loadAcquire(f.head));
	uint32_t head = fileFifoHead(aw, fh);
	uint32_t left = ff.tail - head;
	if (left && left <= aw.window->fileFifoSize()) {
		ff.skipped += left; /* the last file's, never read */
		storeRelease(f.discard, ff.discard = ff.tail);
		aw.pendingIsr |= DEVEMU_ISR_STREAM;
	}
	std::atomic_ref<uint32_t>(f.kick).store(0, std::memory_order_relaxed);
	ff.modelDivert = false;
	publishFileDivert(aw, fh);
}

void DeviceCore::takeBackFileFifo(AttachedWindow &aw, OpenFile &file)
{
	if (file.fh >= aw.fileFifos.size())
		return;
	FileFifo &ff = aw.fileFifos[file.fh];
	devemu_fifo &f = aw.window->fileFifo(file.fh);
	std::span<std::byte> data = aw.window->fileFifoData(file.fh);
	const uint32_t size = static_cast<uint32_t>(data.size());
	/* The driver holds the FIFO's lock for this request: its head stays where it is. */
	countFileHead(ff, loadAcquire(f.head));
	uint32_t head = fileFifoHead(aw, file.fh);
	uint32_t fill = ff.tail - head;
	if (!fill || fill > size)
		return; /* out of range: the pump reports it */
	std::vector<std::byte> records(fill);
	uint32_t off = head & (size - 1);
	uint32_t first = std::min(fill, size - off);
	std::memcpy(records.data(), data.data() + off, first);
	std::memcpy(records.data() + first, data.data(), fill - first);
	ff.skipped += fill; /* back in the model: read later by request or from the FIFO again */
	storeRelease(f.discard, ff.discard = ff.tail);
	aw.pendingIsr |= DEVEMU_ISR_STREAM;
	model_->unproduceFile(file, records);
}

bool DeviceCore::pumpFileFifo(AttachedWindow &aw, OpenFile &file)
{
	FileFifo &ff = aw.fileFifos[file.fh];
	devemu_fifo &f = aw.window->fileFifo(file.fh);
	std::span<std::byte> data = aw.window->fileFifoData(file.fh);
	const uint32_t size = static_cast<uint32_t>(data.size());
	const uint32_t record = std::min(stream_.fileRecord, size);
	uint32_t head = loadAcquire(f.head);
	countFileHead(ff, head);
	if (ff.divert)
		return false; /* its reads come by request, from read() */
	for (;;) {
		/* The driver's own head, not a discard it has yet to act on: it may still be copying from there. */
		uint32_t fill = ff.tail - head;
		if (fill > size) {
			DEVEMU_LOG(Error, name_, "receive FIFO of file {}: head {} out of range (tail {})", file.fh,
				   head, ff.tail);
			return false;
		}
		uint32_t space = size - fill;
		if (space < record)
			return true; /* full: the model may have more */
		uint32_t off = ff.tail & (size - 1);
		uint32_t want = std::min(space, size - off);
		want -= want % record;
		size_t n;
		if (want) {
			n = model_->produceFile(file, data.subspan(off, want));
		} else {
			/* A record that straddles the ring's end goes through a bounce buffer. */
			std::vector<std::byte> bounce(record);
			n = model_->produceFile(file, bounce);
			if (n == record) {
				size_t part = size - off;
				std::memcpy(data.data() + off, bounce.data(), part);
				std::memcpy(data.data(), bounce.data() + part, record - part);
			}
		}
		n -= n % record;
		if (!n)
			return false; /* nothing now: the model's notify() brings us back */
		storeRelease(f.tail, ff.tail += static_cast<uint32_t>(n));
		aw.pendingIsr |= DEVEMU_ISR_STREAM;
		head = loadAcquire(f.head);
		countFileHead(ff, head);
	}
}

void DeviceCore::pumpFileStreams(AttachedWindow &aw)
{
	Window &w = *aw.window;
	const uint32_t size = w.fileFifoSize();
	const uint32_t record = std::min(stream_.fileRecord, size);
	for (uint32_t fh = 0; fh < aw.fileFifos.size(); fh++) {
		OpenFile *file = aw.files[fh].get();
		if (!file)
			continue;
		devemu_fifo &f = w.fileFifo(fh);
		/* Say we want a kick, fence, look again: a reader that drained meanwhile saw the request or is seen. */
		for (;;) {
			bool more = pumpFileFifo(aw, *file);
			std::atomic_ref<uint32_t>(f.kick).store(more ? 1 : 0, std::memory_order_relaxed);
			std::atomic_thread_fence(std::memory_order_seq_cst);
			uint32_t fill = aw.fileFifos[fh].tail - loadAcquire(f.head);
			if (!(more && fill <= size - record && fill <= size / 2))
				break;
		}
	}
}

void DeviceCore::publishFileDivert(AttachedWindow &aw, uint32_t fh)
{
	FileFifo &ff = aw.fileFifos[fh];
	uint32_t divert = ff.modelDivert || findFault(DeviceStats::Read) != faults_.end();
	if (ff.divert == divert)
		return;
	/* A change wakes the file's callers blocked on the FIFO: they go on as requests. */
	storeRelease(aw.window->fileFifo(fh).divert, ff.divert = divert);
	aw.pendingIsr |= DEVEMU_ISR_STREAM;
	shadowDirty_ = true; /* POLLIN moves between the FIFO's fill and the shadow */
}

void DeviceCore::countFileFifoCalls(AttachedWindow &aw)
{
	for (uint32_t fh = 0; fh < aw.fileFifos.size(); fh++) {
		FileFifo &ff = aw.fileFifos[fh];
		const devemu_fifo &f = aw.window->fileFifo(fh);
		countFileHead(ff, loadAcquire(f.head));
		uint32_t calls = loadAcquire(f.calls);
		uint32_t n = calls - std::exchange(ff.callsSeen, calls);
		stats_.requests[DeviceStats::Read] += n;
		stats_.inKernel[DeviceStats::Read] += n;
	}
}

size_t DeviceCore::fileFifoWaiters(const AttachedWindow &aw) const
{
	/* The driver's counts, clamped: a window's word moves a number, nothing else. */
	constexpr uint32_t kMaxWaiters = 1U << 20;
	size_t n = 0;
	for (uint32_t fh = 0; fh < aw.fileFifos.size(); fh++)
		n += std::min(loadAcquire(aw.window->fileFifo(fh).waiters), kMaxWaiters);
	return n;
}

std::pair<DeviceCore::AttachedWindow *, DeviceCore::FileFifo *> DeviceCore::findFileFifo(const OpenFile &file)
{
	for (auto &aw : windows_)
		if (aw.window && file.fh < aw.fileFifos.size() && aw.files[file.fh].get() == &file)
			return { &aw, &aw.fileFifos[file.fh] };
	return { nullptr, nullptr };
}

std::pair<const DeviceCore::AttachedWindow *, const DeviceCore::FileFifo *>
DeviceCore::findFileFifo(const OpenFile &file) const
{
	return const_cast<DeviceCore *>(this)->findFileFifo(file);
}

size_t DeviceCore::fileStreamBytes(const OpenFile &file) const
{
	auto [aw, ff] = findFileFifo(file);
	if (!aw)
		return 0;
	uint32_t fill = ff->tail - fileFifoHead(*aw, file.fh);
	return fill <= aw->window->fileFifoSize() ? fill : 0;
}

size_t DeviceCore::discardFileStream(OpenFile &file)
{
	auto [aw, ff] = findFileFifo(file);
	if (!aw)
		return 0;
	uint32_t fill = ff->tail - fileFifoHead(*aw, file.fh);
	if (!fill || fill > aw->window->fileFifoSize())
		return 0;
	ff->skipped += fill; /* dropped, not read: the head passes them uncounted */
	storeRelease(aw->window->fileFifo(file.fh).discard, ff->discard = ff->tail);
	aw->pendingIsr |= DEVEMU_ISR_STREAM;
	dirty_ = true;
	return fill;
}

void DeviceCore::divertFileStream(OpenFile &file, bool on)
{
	auto [aw, ff] = findFileFifo(file);
	if (!aw || ff->modelDivert == on)
		return;
	ff->modelDivert = on;
	publishFileDivert(*aw, file.fh);
	dirty_ = true;
}

} // namespace devemu
