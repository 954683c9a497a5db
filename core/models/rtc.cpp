// SPDX-License-Identifier: MIT
// rtc: an MC146818 (PC CMOS) real-time clock behind the <linux/rtc.h> ABI of rtc-cmos and the kernel's rtc core.
#include "rtc.h"

#include "devemu/clock.h"
#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/number_text.h"
#include "devemu/strand_timer.h"

#include <fmt/core.h>

#include <linux/rtc.h>
#include <poll.h>
#include <time.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace devemu {

namespace {

constexpr int64_t kSecondsPerDay = 86400;
/* The first update after the divider chain is released comes half a second later (MC146818A data sheet). */
constexpr int64_t kFirstUpdateNs = kNsPerSec / 2;
/* UIP is set 244 us before an update and stays up for the 1984 us update cycle. */
constexpr int64_t kUipBeforeNs = 244'000;
constexpr int64_t kUpdateCycleNs = 1'984'000;
/* How far back advance() looks for alarm matches (longer gaps only set AF once a day's worth was seen). */
constexpr int64_t kAlarmScanSeconds = 2 * kSecondsPerDay;

int64_t floorDiv(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t floorMod(int64_t a, int64_t b)
{
	return a - floorDiv(a, b) * b;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = floorDiv(y, 400);
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void civilFromDays(int64_t z, int64_t &y, unsigned &m, unsigned &d)
{
	z += 719468;
	int64_t era = floorDiv(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	d = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
	m = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
	y = yoe + era * 400 + (m <= 2);
}

bool isLeap(int64_t year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int monthDays(int mon0, int64_t year)
{
	static constexpr int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return days[mon0] + (mon0 == 1 && isLeap(year));
}

uint8_t toBcd(int v)
{
	return static_cast<uint8_t>((v / 10) << 4 | (v % 10));
}

std::string formatTime(int64_t seconds)
{
	RtcFields f = rtcSecondsToFields(seconds);
	return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", f.year, f.mon, f.mday, f.hour, f.min, f.sec);
}

/* The kernel's rtc_valid_tm(). */
bool validTm(const rtc_time &tm)
{
	return !(tm.tm_year < 70 || tm.tm_year > INT_MAX - 1900 || static_cast<unsigned>(tm.tm_mon) >= 12 ||
		 tm.tm_mday < 1 || tm.tm_mday > monthDays(tm.tm_mon, int64_t(tm.tm_year) + 1900) ||
		 static_cast<unsigned>(tm.tm_hour) >= 24 || static_cast<unsigned>(tm.tm_min) >= 60 ||
		 static_cast<unsigned>(tm.tm_sec) >= 60);
}

int64_t tmToSeconds(const rtc_time &tm)
{
	return rtcFieldsToSeconds({ tm.tm_sec, tm.tm_min, tm.tm_hour, tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900 });
}

/* The kernel's rtc_time64_to_tm(): every field, wday and yday included. */
rtc_time secondsToTm(int64_t seconds)
{
	RtcFields f = rtcSecondsToFields(seconds);
	rtc_time tm{};
	tm.tm_sec = f.sec;
	tm.tm_min = f.min;
	tm.tm_hour = f.hour;
	tm.tm_mday = f.mday;
	tm.tm_mon = f.mon - 1;
	tm.tm_year = f.year - 1900;
	tm.tm_wday = rtcWeekday(seconds);
	tm.tm_yday = static_cast<int>(floorDiv(seconds, kSecondsPerDay) - daysFromCivil(f.year, 1, 1));
	tm.tm_isdst = 0;
	return tm;
}

} // namespace

int64_t rtcFieldsToSeconds(const RtcFields &f)
{
	int64_t year = f.year + floorDiv(f.mon - 1, 12);
	unsigned mon = static_cast<unsigned>(floorMod(f.mon - 1, 12) + 1);
	int64_t days = daysFromCivil(year, mon, 1) + (f.mday - 1);
	return days * kSecondsPerDay + int64_t(f.hour) * 3600 + int64_t(f.min) * 60 + f.sec;
}

RtcFields rtcSecondsToFields(int64_t seconds)
{
	int64_t days = floorDiv(seconds, kSecondsPerDay);
	int64_t rem = seconds - days * kSecondsPerDay;
	int64_t y;
	unsigned m, d;
	civilFromDays(days, y, m, d);
	return { static_cast<int>(rem % 60),   static_cast<int>(rem / 60 % 60),
		 static_cast<int>(rem / 3600), static_cast<int>(d),
		 static_cast<int>(m),	       static_cast<int>(y) };
}

int rtcWeekday(int64_t seconds)
{
	return static_cast<int>(floorMod(floorDiv(seconds, kSecondsPerDay) + 4, 7)); /* 1970-01-01 was a Thursday */
}

/* ---------------------------------------------------------------- the chip */

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
		v = (raw >> 4) * 10 + (raw & 0x0f);
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

/* ---------------------------------------------------------------- the model */

namespace {

/* The state file: "offset_ns=N" (comments with #). Missing file: offset 0. */
bool loadState(const std::string &path, int64_t &offsetNs, std::string &error)
{
	std::ifstream in(path);
	if (!in) {
		if (errno == ENOENT)
			return true;
		error = fmt::format("cannot read {}: {}", path, strerror(errno));
		return false;
	}
	std::string line;
	int lineNo = 0;
	while (std::getline(in, line)) {
		lineNo++;
		if (line.empty() || line[0] == '#')
			continue;
		if (line.rfind("offset_ns=", 0) == 0) {
			std::istringstream v(line.substr(10));
			long long n;
			if (v >> n && v.eof()) {
				offsetNs = n;
				continue;
			}
		}
		error = fmt::format("{}:{}: expected offset_ns=NUMBER, got '{}'", path, lineNo, line);
		return false;
	}
	return true;
}

constexpr uint32_t kFeatures = 1u << RTC_FEATURE_ALARM | 1u << RTC_FEATURE_UPDATE_INTERRUPT;

class RtcModel final : public Model
{
public:
	RtcModel(DeviceContext &ctx, RtcConfig config) : ctx_(ctx), config_(std::move(config)), timer_(ctx.strand())
	{
		if (!config_.clock)
			config_.clock = realtimeNs;
	}

	/* The chip powers up with the offset the state file kept. */
	int start(std::string &error) override
	{
		int64_t offsetNs = 0;
		if (!config_.statePath.empty() && !loadState(config_.statePath, offsetNs, error))
			return -EINVAL;
		chip_ = Mc146818(offsetNs);
		chip_.advance(now());
		return 0;
	}

	int open(OpenFile &) override
	{
		/* Like rtc_dev_open(): one opener at a time, and a fresh open sees no old interrupts. */
		if (open_)
			return -EBUSY;
		open_ = true;
		service(now());
		irqData_ = 0;
		rearm();
		return 0;
	}

	void release(OpenFile &) override
	{
		/* Like rtc_dev_release(): update and periodic interrupts go off; the alarm stays armed. */
		irqDisable(Mc146818::kUie | Mc146818::kPie, now());
		open_ = false;
		rearm();
	}

	ssize_t read(OpenFile &, std::span<std::byte> out) override
	{
		if (out.size() != sizeof(unsigned int) && out.size() < sizeof(unsigned long))
			return -EINVAL;
		service(now());
		if (!irqData_)
			return -EAGAIN;
		unsigned long data = std::exchange(irqData_, 0);
		size_t n;
		if (out.size() == sizeof(unsigned int)) {
			unsigned int v = static_cast<unsigned int>(data);
			std::memcpy(out.data(), &v, sizeof(v));
			n = sizeof(v);
		} else {
			std::memcpy(out.data(), &data, sizeof(data));
			n = sizeof(data);
		}
		rearm();
		ctx_.notify();
		return static_cast<ssize_t>(n);
	}

	uint32_t poll(const OpenFile &) override
	{
		service(now());
		return irqData_ ? POLLIN | POLLRDNORM : 0;
	}

	uint32_t readable(const OpenFile &) override { return irqData_ ? sizeof(unsigned long) : 0; }

	IoctlResult ioctl(OpenFile &file, IoctlCall &call) override
	{
		int64_t host = now();
		service(host);
		bool privileged = file.uid == 0; /* stands in for CAP_SYS_TIME / CAP_SYS_RESOURCE */
		/* The permission checks come first, before any argument is copied (rtc_dev_ioctl). */
		switch (call.cmd()) {
		case RTC_SET_TIME:
		case RTC_PARAM_SET:
			if (!privileged)
				return IoctlResult::error(-EACCES);
			break;
		case RTC_IRQP_SET:
			if (call.arg() > config_.maxUserFreq && !privileged)
				return IoctlResult::error(-EACCES);
			break;
		case RTC_PIE_ON:
			if (chip_.periodicHz() > config_.maxUserFreq && !privileged)
				return IoctlResult::error(-EACCES);
			break;
		}

		switch (call.cmd()) {
		case RTC_RD_TIME:
			return call.replyArg(secondsToTm(readTime(host)));

		case RTC_SET_TIME: {
			auto tm = call.argIn<rtc_time>();
			if (!tm)
				return call.done();
			if (!validTm(*tm))
				return IoctlResult::error(-EINVAL);
			int ret = setTime(*tm, host);
			return call.done(ret);
		}

		case RTC_ALM_READ:
			return call.replyArg(secondsToTm(alarmSec_));

		case RTC_ALM_SET: {
			auto tm = call.argIn<rtc_time>();
			if (!tm)
				return call.done();
			/* Up to 24 hours ahead: today's date, or tomorrow's when the time of day has passed. */
			rtc_time alarm = *tm;
			int64_t nowSec = readTime(host);
			rtc_time today = secondsToTm(nowSec);
			alarm.tm_mday = today.tm_mday;
			alarm.tm_mon = today.tm_mon;
			alarm.tm_year = today.tm_year;
			if (!validTm(alarm))
				return IoctlResult::error(-EINVAL);
			if (tmToSeconds(alarm) < nowSec) {
				rtc_time tomorrow = secondsToTm(nowSec + kSecondsPerDay);
				alarm.tm_mday = tomorrow.tm_mday;
				alarm.tm_mon = tomorrow.tm_mon;
				alarm.tm_year = tomorrow.tm_year;
			}
			return call.done(setAlarm(alarm, false, host));
		}

		case RTC_WKALM_SET: {
			auto wk = call.argIn<rtc_wkalrm>();
			if (!wk)
				return call.done();
			return call.done(setAlarm(wk->time, wk->enabled != 0, host));
		}

		case RTC_WKALM_RD: {
			rtc_wkalrm wk{};
			wk.enabled = aieEnabled_;
			wk.pending = 0;
			wk.time = secondsToTm(alarmSec_);
			return call.replyArg(wk);
		}

		case RTC_AIE_ON:
			if (!aieEnabled_)
				aieEnqueue(host);
			return call.done(0);

		case RTC_AIE_OFF:
			if (aieEnabled_)
				aieRemove(host);
			return call.done(0);

		case RTC_UIE_ON:
			/* Without update interrupts (and without the kernel's UIE emulation) this is EINVAL. */
			if (!config_.updateIrq)
				return IoctlResult::error(-EINVAL);
			irqEnable(Mc146818::kUie, host);
			return call.done(0);

		case RTC_UIE_OFF:
			irqDisable(Mc146818::kUie, host);
			return call.done(0);

		case RTC_PIE_ON:
			irqEnable(Mc146818::kPie, host);
			return call.done(0);

		case RTC_PIE_OFF:
			irqDisable(Mc146818::kPie, host);
			return call.done(0);

		case RTC_IRQP_READ:
			return call.replyArg(static_cast<unsigned long>(chip_.periodicHz()));

		case RTC_IRQP_SET: {
			/* The value is the argument itself. The rate select bits give powers of two from 2 to 8192 Hz. */
			uint64_t freq = call.arg();
			if (freq < 2 || freq > RTC_MAX_FREQ || (freq & (freq - 1)))
				return IoctlResult::error(-EINVAL);
			unsigned rs = 16 - static_cast<unsigned>(__builtin_ctzll(freq));
			uint8_t a = chip_.read(Mc146818::kRegA, host);
			chip_.write(Mc146818::kRegA, (a & ~Mc146818::kRsMask) | rs, host);
			rearm();
			return call.done(0);
		}

		case RTC_PARAM_GET: {
			auto param = call.argIn<rtc_param>();
			if (!param) {
				call.writeUser(call.arg(), rtc_param{});
				return call.done();
			}
			rtc_param out = *param;
			switch (param->param) {
			case RTC_PARAM_FEATURES:
				if (param->index != 0)
					return IoctlResult::error(-EINVAL);
				out.uvalue = config_.updateIrq ? kFeatures
							       : kFeatures & ~(1u << RTC_FEATURE_UPDATE_INTERRUPT);
				break;
			default: /* no offset correction, no backup switch mode */
				return IoctlResult::error(-EINVAL);
			}
			return call.replyArg(out);
		}

		case RTC_PARAM_SET: {
			auto param = call.argIn<rtc_param>();
			if (!param)
				return call.done();
			return IoctlResult::error(-EINVAL); /* features are read-only; no correction, no BSM */
		}

		default:
			return IoctlResult::error(-ENOTTY);
		}
	}

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		service(now());
		return runInjectVerb(*this, kVerbs, args, reply);
	}

	static const InjectVerb<RtcModel> kVerbs[4];

private:
	int64_t now() const { return config_.clock(); }

	int injectStatus(const std::vector<std::string> &args, std::string &reply)
	{
		if (args.size() != 1) {
			reply = "status takes no arguments";
			return -EINVAL;
		}
		int64_t host = now();
		int64_t t = chip_.timeNs(host);
		uint8_t b = chip_.peek(Mc146818::kRegB, host);
		reply = fmt::format("time={} offset_ns={} uie={} pie={} aie={} freq={} alarm={} alarm_enabled={} "
				    "irq_data={:#x} open={}",
				    formatTime(floorDiv(t, kNsPerSec)), chip_.offsetNs(), (b & Mc146818::kUie) ? 1 : 0,
				    (b & Mc146818::kPie) ? 1 : 0, (b & Mc146818::kAie) ? 1 : 0, chip_.periodicHz(),
				    formatTime(alarmSec_), aieEnabled_ ? 1 : 0, irqData_, open_ ? 1 : 0);
		return 0;
	}

	int injectRegs(const std::vector<std::string> &args, std::string &reply)
	{
		if (args.size() != 1) {
			reply = "regs takes no arguments";
			return -EINVAL;
		}
		static constexpr const char *names[] = { "seconds",	"seconds_alarm",
							 "minutes",	"minutes_alarm",
							 "hours",	"hours_alarm",
							 "day_of_week", "day_of_month",
							 "month",	"year",
							 "a",		"b",
							 "c",		"d" };
		int64_t host = now();
		reply.clear();
		for (uint8_t r = 0; r <= Mc146818::kRegD; r++)
			reply += fmt::format("{}{:#04x} {}={:#04x}", r ? "\n" : "", r, names[r], chip_.peek(r, host));
		reply += fmt::format("\n{:#04x} century={:#04x}", Mc146818::kCentury,
				     chip_.peek(Mc146818::kCentury, host));
		return 0;
	}

	int injectPeek(const std::vector<std::string> &args, std::string &reply)
	{
		auto reg = args.size() == 2 ? parseUnsigned(args[1], Mc146818::kRegCount - 1) : std::nullopt;
		if (!reg) {
			reply = fmt::format("'{}' is not a register (0 to 0x7f)", args.size() == 2 ? args[1] : "");
			return -EINVAL;
		}
		/* A port read: peeking at C clears it, taking those flags from the driver, as on the real part. */
		reply = fmt::format("{:#04x}", chip_.read(static_cast<uint8_t>(*reg), now()));
		return 0;
	}

	int injectPoke(const std::vector<std::string> &args, std::string &reply)
	{
		auto reg = args.size() == 3 ? parseUnsigned(args[1], Mc146818::kRegCount - 1) : std::nullopt;
		auto value = args.size() == 3 ? parseUnsigned(args[2], 0xff) : std::nullopt;
		if (!reg || !value) {
			reply = "usage: poke REG VALUE (register 0 to 0x7f, value 0 to 0xff)";
			return -EINVAL;
		}
		int64_t host = now();
		chip_.write(static_cast<uint8_t>(*reg), static_cast<uint8_t>(*value), host);
		service(host);
		rearm();
		ctx_.notify();
		reply = fmt::format("{:#04x} <- {:#04x}", *reg, *value);
		return 0;
	}

	/* Reads the clock through the time registers, as cmos_read_time()/mc146818_get_time() do. */
	int64_t readTime(int64_t host)
	{
		uint8_t b = chip_.read(Mc146818::kRegB, host);
		auto get = [&](uint8_t reg) {
			uint8_t raw = chip_.read(reg, host);
			return (b & Mc146818::kDmBinary) ? int(raw) : (raw >> 4) * 10 + (raw & 0x0f);
		};
		RtcFields f;
		f.sec = get(Mc146818::kSeconds);
		f.min = get(Mc146818::kMinutes);
		f.hour = get(Mc146818::kHours);
		f.mday = get(Mc146818::kDayOfMonth);
		f.mon = get(Mc146818::kMonth);
		f.year = get(Mc146818::kCentury) * 100 + get(Mc146818::kYear);
		return rtcFieldsToSeconds(f);
	}

	/* mc146818_set_time(): SET, divider reset, the time registers, release. The first tick comes 500 ms later. */
	int setTime(const rtc_time &tm, int64_t host)
	{
		int64_t year = int64_t(tm.tm_year) + 1900;
		if (tm.tm_year > 255)
			return -EINVAL; /* the chip's year range with the century register: 1970 to 2155 */
		uint8_t b = chip_.read(Mc146818::kRegB, host);
		uint8_t a = chip_.read(Mc146818::kRegA, host);
		auto enc = [b](int64_t v) {
			return (b & Mc146818::kDmBinary) ? static_cast<uint8_t>(v) : toBcd(static_cast<int>(v));
		};
		chip_.write(Mc146818::kRegB, b | Mc146818::kSet, host);
		chip_.write(Mc146818::kRegA, a | Mc146818::kDvReset, host);
		chip_.write(Mc146818::kYear, enc(year % 100), host);
		chip_.write(Mc146818::kMonth, enc(tm.tm_mon + 1), host);
		chip_.write(Mc146818::kDayOfMonth, enc(tm.tm_mday), host);
		chip_.write(Mc146818::kHours, enc(tm.tm_hour), host);
		chip_.write(Mc146818::kMinutes, enc(tm.tm_min), host);
		chip_.write(Mc146818::kSeconds, enc(tm.tm_sec), host);
		chip_.write(Mc146818::kCentury, enc(year / 100), host);
		chip_.write(Mc146818::kRegB, b, host);
		chip_.write(Mc146818::kRegA, a, host);
		DEVEMU_LOG(Info, ctx_.name(), "rtc set to {} UTC", formatTime(tmToSeconds(tm)));
		saveState();
		/* A timer may have expired by the jump (the rtc core re-runs its timer queue). */
		if (aieEnabled_ && alarmSec_ <= readTime(host))
			aieFire(host);
		rearm();
		return 0;
	}

	/* rtc_set_alarm(): the rtc core's one-shot alarm timer, programmed into the chip's alarm registers. */
	int setAlarm(const rtc_time &tm, bool enabled, int64_t host)
	{
		if (!validTm(tm))
			return -EINVAL;
		if (tm.tm_year > 255)
			return -ERANGE; /* rtc_valid_range(): beyond what the chip holds */
		if (aieEnabled_)
			aieRemove(host);
		alarmSec_ = tmToSeconds(tm);
		if (enabled)
			aieEnqueue(host);
		return 0;
	}

	void aieEnqueue(int64_t host)
	{
		aieEnabled_ = true;
		if (alarmSec_ <= readTime(host)) {
			/* Already due: the rtc core fires it at once (-ETIME from the driver, then its irqwork). */
			aieFire(host);
			return;
		}
		/* cmos_set_alarm(): AIE off, the hh:mm:ss alarm registers, AIE on. Other days are the core's job. */
		irqDisable(Mc146818::kAie, host);
		uint8_t b = chip_.read(Mc146818::kRegB, host);
		RtcFields f = rtcSecondsToFields(alarmSec_);
		auto enc = [b](int v) { return (b & Mc146818::kDmBinary) ? static_cast<uint8_t>(v) : toBcd(v); };
		chip_.write(Mc146818::kSecondsAlarm, enc(f.sec), host);
		chip_.write(Mc146818::kMinutesAlarm, enc(f.min), host);
		chip_.write(Mc146818::kHoursAlarm, enc(f.hour), host);
		irqEnable(Mc146818::kAie, host);
	}

	void aieRemove(int64_t host)
	{
		aieEnabled_ = false;
		irqDisable(Mc146818::kAie, host);
	}

	void aieFire(int64_t host)
	{
		aieEnabled_ = false;
		irqDisable(Mc146818::kAie, host);
		legacyIrq(1, RTC_AF);
	}

	/* rtc_handle_legacy_irq(): count in the upper bits, the kinds in the low byte. */
	void legacyIrq(uint64_t count, unsigned long mode)
	{
		irqData_ = (irqData_ + (std::max<uint64_t>(count, 1) << 8)) | RTC_IRQF | mode;
		ctx_.notify(POLLIN);
	}

	/* The interrupt handler (cmos_interrupt()): brings the chip up to date, reads C, reports what is enabled. */
	void service(int64_t host)
	{
		Mc146818::Events ev = chip_.advance(host);
		if (!chip_.irq())
			return;
		uint8_t c = chip_.read(Mc146818::kRegC, host);
		uint8_t b = chip_.read(Mc146818::kRegB, host);
		if ((c & Mc146818::kUf) && (b & Mc146818::kUie))
			legacyIrq(ev.update, RTC_UF);
		if ((c & Mc146818::kPf) && (b & Mc146818::kPie))
			legacyIrq(ev.periodic, RTC_PF);
		if ((c & Mc146818::kAf) && (b & Mc146818::kAie) && aieEnabled_ && alarmSec_ <= readTime(host))
			aieFire(host);
	}

	/* cmos_irq_enable(): flush stale flags from C, then set the enable bits. */
	void irqEnable(uint8_t mask, int64_t host)
	{
		service(host);
		chip_.read(Mc146818::kRegC, host);
		chip_.write(Mc146818::kRegB, chip_.read(Mc146818::kRegB, host) | mask, host);
		rearm();
	}

	void irqDisable(uint8_t mask, int64_t host)
	{
		service(host);
		chip_.write(Mc146818::kRegB, chip_.read(Mc146818::kRegB, host) & ~mask, host);
		rearm();
	}

	/* One timer, at the next enabled interrupt, while someone could be waiting for it. */
	void rearm()
	{
		timer_.cancel();
		if (!open_ || irqData_)
			return;
		int64_t host = now();
		auto next = chip_.nextInterrupt(host);
		if (!next)
			return;
		int64_t delay = std::max<int64_t>(*next - host, 0) + 20'000; /* just past the edge */
		timer_.after(std::chrono::nanoseconds(delay), [this] {
			service(now());
			rearm();
		});
	}

	void saveState()
	{
		if (config_.statePath.empty())
			return;
		std::string tmp = config_.statePath + ".tmp";
		{
			std::ofstream out(tmp, std::ios::trunc);
			out << "# devemu rtc state: the clock is the host's CLOCK_REALTIME plus this offset\n"
			    << "offset_ns=" << chip_.offsetNs() << "\n";
			out.close();
			if (!out) {
				DEVEMU_LOG(Warning, ctx_.name(), "cannot write the rtc state file {}", tmp);
				return;
			}
		}
		if (std::rename(tmp.c_str(), config_.statePath.c_str()) != 0)
			DEVEMU_LOG(Warning, ctx_.name(), "cannot replace the rtc state file {}: {}", config_.statePath,
				   strerror(errno));
	}

	DeviceContext &ctx_;
	RtcConfig config_;
	Mc146818 chip_;
	StrandTimer timer_;
	bool open_ = false;
	unsigned long irqData_ = 0;
	bool aieEnabled_ = false;
	int64_t alarmSec_ = 0; /* the rtc core's aie_timer expiry, seconds since the epoch */
};

const InjectVerb<RtcModel> RtcModel::kVerbs[4] = {
	{ "status", "", "time, offset, interrupt enables, periodic rate, alarm, pending irq data",
	  &RtcModel::injectStatus },
	{ "regs", "", "dump the MC146818 registers (0x00-0x0d, century at 0x32)", &RtcModel::injectRegs },
	{ "peek", "REG", "read a register as the CPU would (reading C clears it)", &RtcModel::injectPeek },
	{ "poke", "REG VALUE", "write a register as the CPU would (e.g. poke 0x0b 0x06: binary mode)",
	  &RtcModel::injectPoke },
};

} // namespace

std::unique_ptr<Model> makeRtcModel(DeviceContext &ctx, RtcConfig config)
{
	return std::make_unique<RtcModel>(ctx, std::move(config));
}

void registerRtcModel(ModelRegistry &registry)
{
	registry.add(
		{ "rtc",
		  "MC146818 (PC CMOS) real-time clock behind <linux/rtc.h>: time, alarm, update and periodic "
		  "interrupts",
		  "state=PATH            keep the clock's offset from the host clock in this file (default: follow the "
		  "host clock)\n"
		  "uie=on|off            update interrupts (RTC_UIE_ON); off makes clients busy-wait on RTC_RD_TIME "
		  "(default on)\n"
		  "max_user_freq=HZ      highest periodic rate without CAP_SYS_RESOURCE, 1 to 8192 (default 64)\n",
		  [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			  RtcConfig config;
			  config.statePath = opts.string("state", "");
			  config.updateIrq = opts.choice("uie", "on", { "on", "off" }) == "on";
			  config.maxUserFreq = static_cast<unsigned>(opts.number("max_user_freq", 64, 1, RTC_MAX_FREQ));
			  return makeRtcModel(ctx, std::move(config));
		  },
		  injectHelp(RtcModel::kVerbs) });
}

} // namespace devemu
