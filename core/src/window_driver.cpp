// SPDX-License-Identifier: MIT
// WindowDriver: tag allocation, entry publication, doorbell suppression and completion dispatch.
#include "devemu/window_driver.h"

#include <cerrno>

namespace devemu {

WindowDriver::WindowDriver(Window &window, std::function<void()> doorbell)
	: window_(window), doorbell_(std::move(doorbell))
{
	/* Lowest tags are reused first, so only a few slots' pages are ever touched. */
	for (uint32_t t = window_.queueDepth(); t-- > 0;)
		freeTags_.push_back(t);
	inflight_.resize(window_.queueDepth());
	window_.regs().features_offered = DEVEMU_F_IOCTL_RETRY | DEVEMU_F_CANCEL | DEVEMU_F_NEED_KICK;
}

void WindowDriver::kick()
{
	if (loadAcquire(window_.sq().flags) & DEVEMU_RING_NEED_KICK)
		doorbell_();
}

void WindowDriver::publish(devemu_sqe sqe, std::span<const std::byte> data, uint32_t tag)
{
	sqe.tag = tag;
	sqe.epoch = window_.regs().attach_epoch;
	if (!data.empty())
		std::memcpy(window_.slot(tag).data(), data.data(), std::min(data.size(), size_t(window_.slotSize())));
	devemu_ring &sq = window_.sq();
	uint32_t tail = sq.tail;
	window_.sqe(tail) = sqe;
	storeRelease(sq.tail, tail + 1);
	std::atomic_thread_fence(std::memory_order_seq_cst);
	kick();
}

WindowDriver::RequestId WindowDriver::submit(devemu_sqe sqe, std::span<const std::byte> data, Completion done)
{
	RequestId id = nextId_++;
	if (freeTags_.empty() || !backlog_.empty()) {
		backlog_.push_back({ id, sqe, { data.begin(), data.end() }, std::move(done) });
		return id;
	}
	uint32_t tag = freeTags_.back();
	freeTags_.pop_back();
	inflight_[tag] = InFlight{ id, std::move(done) };
	inflightCount_++;
	lastTag_ = tag;
	publish(sqe, data, tag);
	return id;
}

uint32_t WindowDriver::findTag(RequestId id) const
{
	if (inflight_[lastTag_].id == id)
		return lastTag_;
	for (uint32_t t = 0; t < inflight_.size(); t++)
		if (inflight_[t].id == id)
			return t;
	return static_cast<uint32_t>(inflight_.size());
}

bool WindowDriver::pending(RequestId id) const
{
	/* The common case, a request that completed during submit(), costs one comparison. */
	if (inflight_[lastTag_].id == id)
		return true;
	if (inflightCount_ == 0 && backlog_.empty())
		return false;
	if (findTag(id) < inflight_.size())
		return true;
	for (const auto &p : backlog_)
		if (p.id == id)
			return true;
	return false;
}

void WindowDriver::cancel(RequestId id)
{
	uint32_t tag = findTag(id);
	if (tag < inflight_.size()) {
		/* One CANCEL per request at most: that is what keeps the submission ring from overflowing. */
		InFlight &req = inflight_[tag];
		if (req.cancelSent)
			return;
		req.cancelSent = true;
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_CANCEL;
		publish(sqe, {}, tag);
		return;
	}
	for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
		if (it->id != id)
			continue;
		Completion done = std::move(it->done);
		devemu_cqe cqe{};
		cqe.result = -EINTR;
		backlog_.erase(it);
		done(cqe, {});
		return;
	}
}

void WindowDriver::interrupt(uint32_t isr)
{
	if (inInterrupt_) {
		again_ = true;
		return;
	}
	inInterrupt_ = true;
	uint16_t epoch = static_cast<uint16_t>(window_.regs().attach_epoch);
	do {
		again_ = false;
		std::atomic_ref<uint32_t>(window_.regs().isr).fetch_and(~isr);
		devemu_ring &cq = window_.cq();
		for (;;) {
			uint32_t head = cq.head;
			if (head == loadAcquire(cq.tail))
				break;
			devemu_cqe cqe = window_.cqe(head);
			if (cqe.tag >= inflight_.size() || !inflight_[cqe.tag].id || cqe.epoch != epoch) {
				stale_++;
				storeRelease(cq.head, head + 1);
				continue;
			}
			InFlight req = std::move(inflight_[cqe.tag]);
			inflight_[cqe.tag] = InFlight{};
			inflightCount_--;
			req.done(cqe, window_.slot(cqe.tag));
			/* Only now is the slot free for reuse. */
			storeRelease(cq.head, head + 1);
			freeTags_.push_back(cqe.tag);
			while (!freeTags_.empty() && !backlog_.empty()) {
				Pending p = std::move(backlog_.front());
				backlog_.pop_front();
				uint32_t tag = freeTags_.back();
				freeTags_.pop_back();
				inflight_[tag] = InFlight{ p.id, std::move(p.done) };
				inflightCount_++;
				publish(p.sqe, p.data, tag);
			}
		}
		if ((isr & DEVEMU_ISR_SHADOW) && onShadow_)
			onShadow_();
		isr = std::atomic_ref<uint32_t>(window_.regs().isr).load();
	} while (again_ || isr);
	inInterrupt_ = false;
}

} // namespace devemu
