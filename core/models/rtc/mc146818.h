// SPDX-License-Identifier: MIT
// rtc: the Motorola MC146818 register file (PC CMOS clock): time, alarm and status registers, battery RAM.
#pragma once

#include "calendar.h"

#include <array>
#include <cstdint>
#include <optional>

namespace devemu {

/*
 * A Motorola MC146818 (PC CMOS) real-time clock: time and alarm registers,
 * status registers A-D, 114 bytes of battery-backed RAM (0x32 holds the
 * century, as ACPI's FADT names it). The time runs off the host clock plus an
 * offset; update, alarm and periodic events are accounted lazily by advance().
 * All times are nanoseconds: host = CLOCK_REALTIME, rtc = the chip's time.
 */
class Mc146818
{
public:
	enum : uint8_t {
		kSeconds = 0x00,
		kSecondsAlarm = 0x01,
		kMinutes = 0x02,
		kMinutesAlarm = 0x03,
		kHours = 0x04,
		kHoursAlarm = 0x05,
		kDayOfWeek = 0x06,
		kDayOfMonth = 0x07,
		kMonth = 0x08,
		kYear = 0x09,
		kRegA = 0x0a,
		kRegB = 0x0b,
		kRegC = 0x0c,
		kRegD = 0x0d,
		kCentury = 0x32,
		kRegCount = 0x80,
	};
	/* Register A */
	static constexpr uint8_t kUip = 0x80;
	static constexpr uint8_t kDvMask = 0x70;
	static constexpr uint8_t kDv32k = 0x20; /* 32.768 kHz time base, divider running */
	static constexpr uint8_t kDvReset = 0x70; /* DV2|DV1: divider chain held in reset */
	static constexpr uint8_t kRsMask = 0x0f;
	/* Register B */
	static constexpr uint8_t kSet = 0x80;
	static constexpr uint8_t kPie = 0x40;
	static constexpr uint8_t kAie = 0x20;
	static constexpr uint8_t kUie = 0x10;
	static constexpr uint8_t kSqwe = 0x08;
	static constexpr uint8_t kDmBinary = 0x04;
	static constexpr uint8_t k24h = 0x02;
	static constexpr uint8_t kDse = 0x01;
	/* Register C */
	static constexpr uint8_t kIrqf = 0x80;
	static constexpr uint8_t kPf = 0x40;
	static constexpr uint8_t kAf = 0x20;
	static constexpr uint8_t kUf = 0x10;
	/* Register D */
	static constexpr uint8_t kVrt = 0x80;
	/* An alarm register value at or above this matches every value ("don't care"). */
	static constexpr uint8_t kDontCare = 0xc0;

	/* Power-on state: A = 0x26 (1024 Hz periodic rate), B = 0x02 (24 h, BCD), C = 0, D = VRT. */
	explicit Mc146818(int64_t offsetNs = 0);

	/* A port access (outb 0x70 index; inb/outb 0x71). Reading C clears it. */
	uint8_t read(uint8_t reg, int64_t hostNs);
	void write(uint8_t reg, uint8_t value, int64_t hostNs);
	/* Reads without side effects (for status dumps). */
	uint8_t peek(uint8_t reg, int64_t hostNs) const;

	/* Events since the previous advance (or state change); sets the C flags and IRQF. */
	struct Events {
		uint64_t update = 0;
		uint64_t alarm = 0;
		uint64_t periodic = 0;
	};
	Events advance(int64_t hostNs);
	/* The IRQ line: IRQF of register C. */
	bool irq() const { return regC_ & kIrqf; }
	/* Host time of the next interrupt an enabled source raises, if any. */
	std::optional<int64_t> nextInterrupt(int64_t hostNs) const;

	/* The chip's time now (frozen while SET or the divider reset holds it). */
	int64_t timeNs(int64_t hostNs) const;
	/* rtc - host while running: what the state file keeps. */
	int64_t offsetNs() const { return offsetNs_; }
	bool running() const;
	/* Periodic interrupt rate of the RS bits in Hz (0: none). */
	static unsigned rateHz(unsigned rs);
	unsigned periodicHz() const { return rateHz(regA_ & kRsMask); }

private:
	uint8_t encode(int value) const;
	std::optional<int> decode(uint8_t raw, int min, int max) const;
	uint8_t readTimeRegister(uint8_t reg, int64_t hostNs) const;
	void writeTimeRegister(uint8_t reg, uint8_t value, int64_t hostNs);
	void setRunState(bool wasRunning, int64_t hostNs);
	/* The first second in [from, to] whose time matches the alarm registers. */
	std::optional<int64_t> nextAlarmMatch(int64_t from, int64_t to) const;
	void updateIrqf();

	int64_t offsetNs_;
	int64_t lastRtcNs_; /* events up to here are accounted */
	bool frozen_ = false;
	RtcFields frozenFields_; /* the time registers while frozen (not normalised until release) */
	int64_t frozenFracNs_ = 0;
	bool dividerWasReset_ = false;
	uint8_t regA_ = 0x26;
	uint8_t regB_ = k24h;
	uint8_t regC_ = 0;
	std::array<uint8_t, 3> alarm_{}; /* seconds, minutes, hours alarm registers, raw */
	std::array<uint8_t, kRegCount> ram_{};
};

} // namespace devemu
