// SPDX-License-Identifier: MIT
// watchdog: the SP805-style timer block: a 1 kHz down-counter, pre-timeout interrupt, sticky reset status.
#include "watchdog_timer.h"

#include "devemu/clock.h"
#include "devemu/log.h"

#include <algorithm>

namespace devemu {

uint32_t WatchdogTimer::read(uint32_t offset, int64_t nowNs)
{
	switch (offset) {
	case kLoad:
		return load_;
	case kValue:
		advance(nowNs);
		if (!(control_ & kEn))
			return load_;
		return static_cast<uint32_t>(std::max<int64_t>(deadlineNs() - nowNs, 0) / kNsPerMs);
	case kControl:
		return control_;
	case kPreload:
		return preload_;
	case kStatus:
		advance(nowNs);
		return status_;
	case kResets:
		return resets_;
	case kId:
		return kIdValue;
	default:
		return 0;
	}
}

void WatchdogTimer::write(uint32_t offset, uint32_t value, int64_t nowNs)
{
	advance(nowNs);
	switch (offset) {
	case kLoad:
		/* Like the SP805: a new load value restarts the count at once. */
		load_ = std::max<uint32_t>(value, 1);
		startNs_ = nowNs;
		preFired_ = false;
		return;
	case kControl:
		if ((value & kEn) && !(control_ & kEn)) {
			startNs_ = nowNs;
			preFired_ = false;
		}
		control_ = value & (kEn | kPreIntEn | kResEn);
		return;
	case kPreload:
		preload_ = value;
		preFired_ = false;
		return;
	case kKick:
		if (value != kKickMagic) {
			DEVEMU_LOG(Debug, "watchdog", "timer: ignoring KICK value {:#x}", value);
			return;
		}
		startNs_ = nowNs;
		preFired_ = false;
		status_ &= ~kStatusPre;
		return;
	case kStatus:
		status_ &= ~value;
		return;
	default:
		DEVEMU_LOG(Debug, "watchdog", "timer: write of {:#x} to read-only or unknown register {:#x}", value,
			   offset);
	}
}

void WatchdogTimer::advance(int64_t nowNs)
{
	if (!(control_ & kEn))
		return;
	if ((control_ & kPreIntEn) && preload_ && !preFired_ && nowNs >= deadlineNs() - int64_t(preload_) * kNsPerMs) {
		preFired_ = true;
		status_ |= kStatusPre;
		events_.pretimeout = true;
	}
	if (nowNs >= deadlineNs()) {
		/* The count stops at zero; with RESEN that is the reset, which also clears the block's control. */
		bool reset = control_ & kResEn;
		control_ = 0;
		if (reset) {
			status_ |= kStatusTimeout;
			resets_++;
			events_.reset = true;
		}
	}
}

std::optional<int64_t> WatchdogTimer::nextEvent(int64_t) const
{
	if (!(control_ & kEn))
		return std::nullopt;
	int64_t t = deadlineNs();
	if ((control_ & kPreIntEn) && preload_ && !preFired_)
		t = std::min(t, deadlineNs() - int64_t(preload_) * kNsPerMs);
	return t;
}

} // namespace devemu
