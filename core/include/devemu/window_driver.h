// SPDX-License-Identifier: MIT
// WindowDriver: the driver side of a device window in user space (tags, submissions, completions).
#pragma once

#include "devemu/window.h"

#include <deque>
#include <functional>
#include <vector>

namespace devemu {

/*
 * What the CUSE and FUSE transports use to reach a DeviceCore, and what the
 * unit tests use as a stand-in for the kernel shim: it allocates tags, copies
 * request data into the tag's slot, publishes entries, rings the doorbell when
 * the core asks for it, and runs completions from the interrupt. Requests that
 * find every tag busy wait in a backlog, in order. Not thread-safe: it runs on
 * its device's strand.
 */
class WindowDriver
{
public:
	using RequestId = uint64_t;
	/* Runs once per request; slot holds the output (READ data, IOCTL output or retry list). */
	using Completion = std::function<void(const devemu_cqe &cqe, std::span<const std::byte> slot)>;

	WindowDriver(Window &window, std::function<void()> doorbell);

	/* Submits; sqe.tag and sqe.epoch are filled in. data is copied to the slot (at most slotSize). */
	RequestId submit(devemu_sqe sqe, std::span<const std::byte> data, Completion done);
	/* Ends a request early: a backlogged one at once with -EINTR, a submitted one via one CANCEL entry. */
	void cancel(RequestId id);
	/* The interrupt handler: drains the completion ring. */
	void interrupt(uint32_t isr);
	/* Called on DEVEMU_ISR_SHADOW (poll readiness may have changed). */
	void setShadowHandler(std::function<void()> handler) { onShadow_ = std::move(handler); }

	size_t inFlight() const { return inflightCount_; }
	size_t backlog() const { return backlog_.size(); }
	/* Whether a request has not completed yet. */
	bool pending(RequestId id) const;
	uint64_t staleCompletions() const { return stale_; }

private:
	struct Pending {
		RequestId id;
		devemu_sqe sqe;
		std::vector<std::byte> data;
		Completion done;
	};
	struct InFlight {
		RequestId id = 0; /* 0: the tag is free */
		Completion done;
		bool cancelSent = false;
	};
	/* The tag a request holds, or queueDepth() when it has none (backlogged or done). */
	uint32_t findTag(RequestId id) const;

	void publish(devemu_sqe sqe, std::span<const std::byte> data, uint32_t tag);
	void kick();

	Window &window_;
	std::function<void()> doorbell_;
	std::function<void()> onShadow_;
	std::vector<uint32_t> freeTags_;
	std::vector<InFlight> inflight_; /* by tag */
	size_t inflightCount_ = 0;
	std::deque<Pending> backlog_;
	RequestId nextId_ = 1;
	uint32_t lastTag_ = 0; /* tag of the latest submission: pending() looks there first */
	bool inInterrupt_ = false;
	bool again_ = false;
	uint64_t stale_ = 0;
};

} // namespace devemu
