// SPDX-License-Identifier: MIT
// StrandTimer: a one-shot timer on a device's strand that models re-arm and cancel freely.
#pragma once

#include "devemu/asio.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

namespace devemu {

/*
 * A one-shot timer for a model: only the latest after()/at() runs its
 * handler, on the strand, and never once cancel() was called or the timer was
 * destroyed (a completion already queued is dropped by its generation). The
 * Asio timer is made on first use, so a model that never started holds none.
 */
class StrandTimer
{
public:
	using Clock = std::chrono::steady_clock;

	explicit StrandTimer(const Strand &strand) : strand_(strand) {}
	~StrandTimer() { cancel(); }
	StrandTimer(const StrandTimer &) = delete;
	StrandTimer &operator=(const StrandTimer &) = delete;

	/* Runs handler once, delay from now (replacing what was armed). */
	void after(Clock::duration delay, std::function<void()> handler);
	/* Runs handler once at when (replacing what was armed). */
	void at(Clock::time_point when, std::function<void()> handler);
	/* Nothing armed runs. */
	void cancel();
	/* Armed, and its handler has not started yet. */
	bool pending() const { return pending_; }

private:
	void wait(std::function<void()> handler);

	Strand strand_;
	std::optional<asio::steady_timer> timer_;
	std::shared_ptr<uint64_t> generation_ = std::make_shared<uint64_t>(0);
	bool pending_ = false;
};

} // namespace devemu
