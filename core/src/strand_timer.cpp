// SPDX-License-Identifier: MIT
// StrandTimer: one-shot timers whose stale completions (re-armed, cancelled, destroyed) never run.
#include "devemu/strand_timer.h"

namespace devemu {

void StrandTimer::after(Clock::duration delay, std::function<void()> handler)
{
	cancel();
	if (!timer_)
		timer_.emplace(strand_);
	timer_->expires_after(delay);
	wait(std::move(handler));
}

void StrandTimer::at(Clock::time_point when, std::function<void()> handler)
{
	cancel();
	if (!timer_)
		timer_.emplace(strand_);
	timer_->expires_at(when);
	wait(std::move(handler));
}

void StrandTimer::cancel()
{
	++*generation_;
	pending_ = false;
	if (timer_)
		timer_->cancel();
}

void StrandTimer::wait(std::function<void()> handler)
{
	pending_ = true;
	timer_->async_wait([this, alive = std::weak_ptr<uint64_t>(generation_), mine = *generation_,
			    handler = std::move(handler)](const boost::system::error_code &ec) {
		auto generation = alive.lock();
		if (ec || !generation || *generation != mine)
			return; /* cancelled, re-armed, or the timer is gone */
		pending_ = false;
		handler();
	});
}

} // namespace devemu
