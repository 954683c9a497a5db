// SPDX-License-Identifier: MIT
// rtc: the rtc core and rtc-cmos semantics over the MC146818: <linux/rtc.h> ioctls, alarms, UIE/PIE, read(); registration.
#include "rtc.h"

#include "calendar.h"
#include "mc146818.h"
#include "rtc_state.h"

#include "devemu/caller.h"
#include "devemu/clock.h"
#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/number_text.h"
#include "devemu/strand_timer.h"

#include <fmt/core.h>

#include <linux/capability.h>
#include <linux/rtc.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace devemu {

namespace {

/* What a 32-bit caller's RTC_IRQP_READ/SET are: their size field holds a 4-byte unsigned long (rtc-dev's compat ioctl). */
constexpr uint32_t kIrqpRead32 = _IOR('p', 0x0b, uint32_t);
constexpr uint32_t kIrqpSet32 = _IOW('p', 0x0c, uint32_t);

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
		if (!config_.statePath.empty() && !loadRtcState(config_.statePath, offsetNs, error))
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
		/*
		 * The permission checks come first, before any argument is copied (rtc_dev_ioctl), and
		 * are made of the caller of this ioctl, as capable() does, not of the file's opener.
		 */
		switch (call.cmd()) {
		case RTC_SET_TIME:
		case RTC_PARAM_SET:
			if (!callerCapable(file, CAP_SYS_TIME))
				return IoctlResult::error(-EACCES);
			break;
		case RTC_IRQP_SET:
		case kIrqpSet32:
			if (call.arg() > config_.maxUserFreq && !callerCapable(file, CAP_SYS_RESOURCE))
				return IoctlResult::error(-EACCES);
			break;
		case RTC_PIE_ON:
			if (chip_.periodicHz() > config_.maxUserFreq && !callerCapable(file, CAP_SYS_RESOURCE))
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
		case kIrqpRead32:
			return call.replyArg(static_cast<uint32_t>(chip_.periodicHz()));

		case RTC_IRQP_SET:
		case kIrqpSet32: {
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
			return (b & Mc146818::kDmBinary) ? int(raw) : fromBcd(raw);
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
		std::string error;
		if (!saveRtcState(config_.statePath, chip_.offsetNs(), error))
			DEVEMU_LOG(Warning, ctx_.name(), "{}", error);
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
