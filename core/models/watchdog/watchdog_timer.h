// SPDX-License-Identifier: MIT
// watchdog: the countdown timer block (registers, lazily evaluated count) the watchdog model drives.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

namespace devemu {

/*
 * A watchdog timer block in the style of ARM's SP805: a 1 kHz down-counter
 * loaded from LOAD, a pre-timeout interrupt when it passes PRELOAD, and a
 * reset when it reaches zero with RESEN set. The reset is sticky in STATUS
 * (that is where the boot status comes from) and counted in RESETS. Times are
 * nanoseconds of a monotonic clock; the counter is evaluated lazily.
 */
class WatchdogTimer
{
public:
	enum : uint32_t {
		kLoad = 0x00, /* RW: start value of the counter, ms */
		kValue = 0x04, /* RO: ms left */
		kControl = 0x08, /* RW: EN | PREINTEN | RESEN */
		kPreload = 0x0c, /* RW: pre-timeout interrupt when VALUE drops to this, ms (0: none) */
		kKick = 0x10, /* WO: kKickMagic reloads VALUE from LOAD */
		kStatus = 0x14, /* RW1C: PRE, TIMEOUT */
		kResets = 0x18, /* RO: timeouts that reset the machine */
		kId = 0x1c, /* RO: kIdValue */
	};
	static constexpr uint32_t kEn = 1u << 0;
	static constexpr uint32_t kPreIntEn = 1u << 1;
	static constexpr uint32_t kResEn = 1u << 2;
	static constexpr uint32_t kStatusPre = 1u << 0;
	static constexpr uint32_t kStatusTimeout = 1u << 1;
	static constexpr uint32_t kKickMagic = 0x4b49434b; /* "KICK" */
	static constexpr uint32_t kIdValue = 0x57445431; /* "WDT1" */

	WatchdogTimer() = default;

	uint32_t read(uint32_t offset, int64_t nowNs);
	void write(uint32_t offset, uint32_t value, int64_t nowNs);

	/* Brings the count up to now; a pre-timeout or reset passed on the way is latched for takeEvents(). */
	void advance(int64_t nowNs);
	struct Events {
		bool pretimeout = false;
		bool reset = false;
	};
	/* The interrupt and reset lines since the last call. */
	Events takeEvents() { return std::exchange(events_, {}); }
	/* When the next pre-timeout or reset is due, if counting. */
	std::optional<int64_t> nextEvent(int64_t nowNs) const;

private:
	int64_t deadlineNs() const { return startNs_ + int64_t(load_) * 1'000'000; }

	uint32_t load_ = 60000;
	uint32_t control_ = 0;
	uint32_t preload_ = 0;
	uint32_t status_ = 0;
	uint32_t resets_ = 0;
	int64_t startNs_ = 0; /* when VALUE was last loaded */
	bool preFired_ = false;
	Events events_;
};

} // namespace devemu
