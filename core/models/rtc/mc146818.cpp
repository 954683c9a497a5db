// SPDX-License-Identifier: MIT
// rtc: the MC146818 register file: BCD/binary time registers, SET and divider freeze, lazily counted interrupts.
#include "mc146818.h"

#include "calendar.h"

#include "devemu/clock.h"
#include "devemu/log.h"

#include <algorithm>
#include <climits>
#include <utility>

namespace devemu {

namespace {

/* The first update after the divider chain is released comes half a second later (MC146818A data sheet). */
constexpr int64_t kFirstUpdateNs = kNsPerSec / 2;
/* UIP is set 244 us before an update and stays up for the 1984 us update cycle. */
constexpr int64_t kUipBeforeNs = 244'000;
constexpr int64_t kUpdateCycleNs = 1'984'000;
/* How far back advance() looks for alarm matches (longer gaps only set AF once a day's worth was seen). */
constexpr int64_t kAlarmScanSeconds = 2 * kSecondsPerDay;

} // namespace

Mc146818::Mc146818(int64_t offsetNs) : offsetNs_(offsetNs), lastRtcNs_(0)
{
	lastRtcNs_ = INT64_MIN;
	ram_[kRegD] = kVrt;
}

bool Mc146818::running() const
{
	return !(regB_ & kSet) && (regA_ & kDvMask) == kDv32k;
}

unsigned Mc146818::rateHz(unsigned rs)
{
	rs &= kRsMask;
	if (rs == 0)
		return 0;
	if (rs <= 2)
		return rs == 1 ? 256 : 128;
	return 65536u >> rs;
}

int64_t Mc146818::timeNs(int64_t hostNs) const
{
	if (frozen_)
		return rtcFieldsToSeconds(frozenFields_) * kNsPerSec + frozenFracNs_;
	return hostNs + offsetNs_;
}

uint8_t Mc146818::encode(int value) const
{
	return (regB_ & kDmBinary) ? static_cast<uint8_t>(value) : toBcd(value);
}

std::optional<int> Mc146818::decode(uint8_t raw, int min, int max) const
{
	int v = raw;
	if (!(regB_ & kDmBinary)) {
		if ((raw & 0x0f) > 9 || (raw >> 4) > 9)
			return std::nullopt;
		v = fromBcd(raw);
	}
	if (v < min || v > max)
		return std::nullopt;
	return v;
}

uint8_t Mc146818::readTimeRegister(uint8_t reg, int64_t hostNs) const
{
	RtcFields f = frozen_ ? frozenFields_ : rtcSecondsToFields(floorDiv(timeNs(hostNs), kNsPerSec));
	switch (reg) {
	case kSeconds:
		return encode(f.sec);
	case kMinutes:
		return encode(f.min);
	case kHours:
		return encode(f.hour);
	case kDayOfWeek:
		return encode(rtcWeekday(rtcFieldsToSeconds(f)) + 1); /* 1 = Sunday */
	case kDayOfMonth:
		return encode(f.mday);
	case kMonth:
		return encode(f.mon);
	case kYear:
		return encode(static_cast<int>(floorMod(f.year, 100)));
	case kCentury:
		return encode(static_cast<int>(floorDiv(f.year, 100)));
	}
	return 0;
}

void Mc146818::writeTimeRegister(uint8_t reg, uint8_t value, int64_t hostNs)
{
	static constexpr struct {
		uint8_t reg;
		int min, max;
		const char *name;
	} limits[] = { { kSeconds, 0, 59, "seconds" }, { kMinutes, 0, 59, "minutes" },
		       { kHours, 0, 23, "hours" },     { kDayOfMonth, 1, 31, "day of month" },
		       { kMonth, 1, 12, "month" },     { kYear, 0, 99, "year" },
		       { kCentury, 0, 99, "century" } };
	if (reg == kDayOfWeek)
		return; /* derived from the date here */
	for (const auto &l : limits) {
		if (l.reg != reg)
			continue;
		auto v = decode(value, l.min, l.max);
		if (!v) {
			DEVEMU_LOG(Debug, "rtc", "MC146818: ignoring {} register value {:#04x} ({} mode)", l.name,
				   value, (regB_ & kDmBinary) ? "binary" : "BCD");
			return;
		}
		if (!frozen_)
			advance(hostNs); /* events before the change belong to the old time */
		int64_t nowNs = timeNs(hostNs);
		RtcFields f = frozen_ ? frozenFields_ : rtcSecondsToFields(floorDiv(nowNs, kNsPerSec));
		switch (reg) {
		case kSeconds:
			f.sec = *v;
			break;
		case kMinutes:
			f.min = *v;
			break;
		case kHours:
			f.hour = *v;
			break;
		case kDayOfMonth:
			f.mday = *v;
			break;
		case kMonth:
			f.mon = *v;
			break;
		case kYear:
			f.year = static_cast<int>(floorDiv(f.year, 100) * 100 + *v);
			break;
		case kCentury:
			f.year = static_cast<int>(*v * 100 + floorMod(f.year, 100));
			break;
		}
		if (frozen_) {
			frozenFields_ = f; /* kept as written until the clock runs again */
		} else {
			int64_t fracNs = floorMod(nowNs, kNsPerSec);
			offsetNs_ = rtcFieldsToSeconds(f) * kNsPerSec + fracNs - hostNs;
			lastRtcNs_ = timeNs(hostNs);
		}
		return;
	}
}

void Mc146818::setRunState(bool wasRunning, int64_t hostNs)
{
	bool now = running();
	if (wasRunning && !now) {
		int64_t t = hostNs + offsetNs_;
		frozenFields_ = rtcSecondsToFields(floorDiv(t, kNsPerSec));
		frozenFracNs_ = floorMod(t, kNsPerSec);
		frozen_ = true;
	} else if (!wasRunning && now) {
		/* Normalises what was written (a 31st of February rolls into March, as the counters would). */
		int64_t t = rtcFieldsToSeconds(frozenFields_) * kNsPerSec +
			    (dividerWasReset_ ? kFirstUpdateNs : frozenFracNs_);
		offsetNs_ = t - hostNs;
		lastRtcNs_ = t;
		frozen_ = false;
		dividerWasReset_ = false;
	}
}

uint8_t Mc146818::peek(uint8_t reg, int64_t hostNs) const
{
	reg &= kRegCount - 1;
	switch (reg) {
	case kSeconds:
	case kMinutes:
	case kHours:
	case kDayOfWeek:
	case kDayOfMonth:
	case kMonth:
	case kYear:
	case kCentury:
		return readTimeRegister(reg, hostNs);
	case kSecondsAlarm:
		return alarm_[0];
	case kMinutesAlarm:
		return alarm_[1];
	case kHoursAlarm:
		return alarm_[2];
	case kRegA: {
		uint8_t a = regA_;
		if (running()) {
			int64_t frac = floorMod(timeNs(hostNs), kNsPerSec);
			if (frac >= kNsPerSec - kUipBeforeNs || frac < kUpdateCycleNs)
				a |= kUip;
		}
		return a;
	}
	case kRegB:
		return regB_;
	case kRegC:
		return regC_;
	case kRegD:
		return kVrt;
	default:
		return ram_[reg];
	}
}

uint8_t Mc146818::read(uint8_t reg, int64_t hostNs)
{
	reg &= kRegCount - 1;
	if (reg != kRegC)
		return peek(reg, hostNs);
	advance(hostNs);
	return std::exchange(regC_, 0);
}

void Mc146818::write(uint8_t reg, uint8_t value, int64_t hostNs)
{
	reg &= kRegCount - 1;
	switch (reg) {
	case kSeconds:
	case kMinutes:
	case kHours:
	case kDayOfWeek:
	case kDayOfMonth:
	case kMonth:
	case kYear:
	case kCentury:
		writeTimeRegister(reg, value, hostNs);
		return;
	case kSecondsAlarm:
		alarm_[0] = value;
		return;
	case kMinutesAlarm:
		alarm_[1] = value;
		return;
	case kHoursAlarm:
		alarm_[2] = value;
		return;
	case kRegA: {
		bool was = running();
		advance(hostNs);
		if ((value & 0x60) == 0x60)
			dividerWasReset_ = true;
		regA_ = value & ~kUip;
		setRunState(was, hostNs);
		return;
	}
	case kRegB: {
		bool was = running();
		advance(hostNs);
		if (value & kSet)
			value &= ~kUie; /* setting SET clears UIE */
		if (!(value & k24h))
			DEVEMU_LOG(Debug, "rtc", "MC146818: 12-hour mode is not modelled; staying in 24-hour mode");
		regB_ = value | k24h;
		updateIrqf();
		setRunState(was, hostNs);
		return;
	}
	case kRegC:
	case kRegD:
		DEVEMU_LOG(Debug, "rtc", "MC146818: register {:#04x} is read-only", reg);
		return;
	default:
		ram_[reg] = value;
	}
}

std::optional<int64_t> Mc146818::nextAlarmMatch(int64_t from, int64_t to) const
{
	/* Each update compares the alarm registers with the new time: skip hours and minutes that cannot match. */
	auto match = [this](uint8_t alarm, int value) { return alarm >= kDontCare || alarm == encode(value); };
	for (int64_t s = from; s <= to;) {
		RtcFields f = rtcSecondsToFields(s);
		if (!match(alarm_[2], f.hour))
			s += 3600 - f.min * 60 - f.sec;
		else if (!match(alarm_[1], f.min))
			s += 60 - f.sec;
		else if (!match(alarm_[0], f.sec))
			s++;
		else
			return s;
	}
	return std::nullopt;
}

void Mc146818::updateIrqf()
{
	if (regC_ & regB_ & (kPf | kAf | kUf))
		regC_ |= kIrqf;
}

Mc146818::Events Mc146818::advance(int64_t hostNs)
{
	Events e;
	if (!running())
		return e;
	int64_t now = hostNs + offsetNs_;
	if (lastRtcNs_ == INT64_MIN || now < lastRtcNs_ - kNsPerSec) {
		/* First look, or the host clock stepped back: nothing happened in between. */
		lastRtcNs_ = now;
		return e;
	}
	if (now <= lastRtcNs_)
		return e;
	int64_t s0 = floorDiv(lastRtcNs_, kNsPerSec), s1 = floorDiv(now, kNsPerSec);
	e.update = static_cast<uint64_t>(s1 - s0);
	if (unsigned rate = periodicHz()) {
		auto ticks = [rate](int64_t ns) {
			return floorDiv(ns, kNsPerSec) * rate + floorMod(ns, kNsPerSec) * rate / kNsPerSec;
		};
		e.periodic = static_cast<uint64_t>(ticks(now) - ticks(lastRtcNs_));
	}
	for (int64_t s = std::max(s0 + 1, s1 - kAlarmScanSeconds + 1); s <= s1; s++) {
		auto match = nextAlarmMatch(s, s1);
		if (!match)
			break;
		e.alarm++;
		s = *match;
	}
	lastRtcNs_ = now;
	if (e.update)
		regC_ |= kUf;
	if (e.alarm)
		regC_ |= kAf;
	if (e.periodic)
		regC_ |= kPf;
	updateIrqf();
	return e;
}

std::optional<int64_t> Mc146818::nextInterrupt(int64_t hostNs) const
{
	if (!running())
		return std::nullopt;
	int64_t now = hostNs + offsetNs_;
	std::optional<int64_t> next;
	auto consider = [&next](int64_t t) {
		if (!next || t < *next)
			next = t;
	};
	int64_t sec = floorDiv(now, kNsPerSec);
	if (regB_ & kUie)
		consider((sec + 1) * kNsPerSec);
	unsigned rate = periodicHz();
	if ((regB_ & kPie) && rate) {
		int64_t tick = sec * rate + floorMod(now, kNsPerSec) * rate / kNsPerSec + 1;
		int64_t tickSec = floorDiv(tick, rate);
		int64_t rem = tick - tickSec * rate;
		consider(tickSec * kNsPerSec + (rem * kNsPerSec + rate - 1) / rate);
	}
	if (regB_ & kAie)
		if (auto s = nextAlarmMatch(sec + 1, sec + kSecondsPerDay))
			consider(*s * kNsPerSec);
	if (!next)
		return std::nullopt;
	return *next - offsetNs_;
}

} // namespace devemu
