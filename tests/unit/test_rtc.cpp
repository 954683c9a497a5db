// SPDX-License-Identifier: MIT
// Unit tests of the rtc model: the MC146818 register file, and the <linux/rtc.h> ABI driven from it.
#include "harness.h"

#include "rtc/calendar.h"
#include "rtc/mc146818.h"
#include "rtc/rtc.h"

#include "devemu/caller.h"

#include <linux/capability.h>
#include <linux/rtc.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/core.h>

#include <chrono>
#include <filesystem>
#include <fstream>

using namespace devemu;

namespace {

constexpr int64_t kSec = 1'000'000'000;

/* The host clock the test models see (CLOCK_REALTIME in ns). */
int64_t gClock = 0;

/* 2024-02-29 23:59:58 UTC (a Thursday, day 59 of a leap year) plus 250 ms. */
constexpr int64_t kLeapDay = 1709251198;

struct RegisterTestRtc {
	RegisterTestRtc()
	{
		ModelRegistry::builtin().add({ "test-rtc", "rtc on a fake host clock", "",
					       [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
						       RtcConfig c;
						       c.clock = [] { return gClock; };
						       c.statePath = opts.string("state", "");
						       c.updateIrq = opts.choice("uie", "on", { "on", "off" }) == "on";
						       return makeRtcModel(ctx, c);
					       } });
	}
} registerTestRtc;

/* An rtc on the fake clock, with caller memory at kArg for ioctl arguments. */
struct Rtc {
	static constexpr uint64_t kArg = 0x10000;

	explicit Rtc(ModelOptions::Pairs options = {}, int64_t start = kLeapDay * kSec + kSec / 4)
	{
		gClock = start;
		h = std::make_unique<test::Harness>("test-rtc", std::move(options));
		mem.regions[kArg].resize(64);
	}

	int open(uint32_t uid = 0, uint32_t flags = 0)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_OPEN;
		sqe.uid = uid;
		sqe.open_flags = flags;
		auto o = h->submit(sqe);
		REQUIRE(o->done);
		return o->result;
	}

	template<typename T>
	int ioctl(int fh, uint32_t cmd, const T &in)
	{
		std::memcpy(mem.regions[kArg].data(), &in, sizeof(T));
		return h->ioctl(static_cast<uint32_t>(fh), cmd, kArg, mem);
	}
	int ioctl(int fh, uint32_t cmd, uint64_t arg = kArg)
	{
		return h->ioctl(static_cast<uint32_t>(fh), cmd, arg, mem);
	}
	template<typename T>
	T out() const
	{
		T v;
		std::memcpy(&v, mem.regions.at(kArg).data(), sizeof(T));
		return v;
	}
	rtc_time readTime(int fh)
	{
		REQUIRE(ioctl(fh, RTC_RD_TIME) == 0);
		return out<rtc_time>();
	}
	/* The fake clock moves; the core retries what was parked, as the model's timer would make it. */
	void advance(int64_t ns)
	{
		gClock += ns;
		h->core_->notify();
	}
	std::string inject(std::vector<std::string> args)
	{
		std::string reply;
		REQUIRE(h->core_->inject(args, reply) == 0);
		return reply;
	}

	std::unique_ptr<test::Harness> h;
	test::FakeMemory mem;
};

rtc_time tmOf(int year, int mon, int mday, int hour, int min, int sec)
{
	rtc_time tm{};
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	return tm;
}

uint64_t irqData(const test::Outcome &o)
{
	uint64_t v = 0;
	std::memcpy(&v, o.data.data(), std::min<size_t>(o.data.size(), 8));
	return v;
}

} // namespace

TEST_CASE("rtc: calendar arithmetic round-trips across leap days and centuries")
{
	for (int64_t s : { int64_t(0), kLeapDay, int64_t(951782400) /* 2000-02-29 */,
			   int64_t(4107542399) /* 2100-02-28 23:59:59 */ }) {
		RtcFields f = rtcSecondsToFields(s);
		CHECK(rtcFieldsToSeconds(f) == s);
	}
	RtcFields f = rtcSecondsToFields(kLeapDay);
	CHECK(f.year == 2024);
	CHECK(f.mon == 2);
	CHECK(f.mday == 29);
	CHECK(f.hour == 23);
	CHECK(f.min == 59);
	CHECK(f.sec == 58);
	CHECK(rtcWeekday(kLeapDay) == 4);
	/* 2100 is not a leap year: the 29th of February rolls into March. */
	CHECK(rtcSecondsToFields(rtcFieldsToSeconds({ 0, 0, 0, 29, 2, 2100 })).mon == 3);
}

TEST_CASE("rtc: MC146818 power-on registers and BCD/binary time registers")
{
	int64_t host = kLeapDay * kSec + kSec / 2;
	Mc146818 chip(0);
	CHECK(chip.peek(Mc146818::kRegA, host) == 0x26);
	CHECK(chip.peek(Mc146818::kRegB, host) == 0x02);
	CHECK(chip.peek(Mc146818::kRegC, host) == 0x00);
	CHECK(chip.peek(Mc146818::kRegD, host) == 0x80);
	CHECK(chip.periodicHz() == 1024);
	CHECK(chip.read(Mc146818::kSeconds, host) == 0x58);
	CHECK(chip.read(Mc146818::kMinutes, host) == 0x59);
	CHECK(chip.read(Mc146818::kHours, host) == 0x23);
	CHECK(chip.read(Mc146818::kDayOfWeek, host) == 5); /* Thursday; 1 = Sunday */
	CHECK(chip.read(Mc146818::kDayOfMonth, host) == 0x29);
	CHECK(chip.read(Mc146818::kMonth, host) == 0x02);
	CHECK(chip.read(Mc146818::kYear, host) == 0x24);
	CHECK(chip.read(Mc146818::kCentury, host) == 0x20);
	chip.write(Mc146818::kRegB, 0x02 | Mc146818::kDmBinary, host);
	CHECK(chip.read(Mc146818::kSeconds, host) == 58);
	CHECK(chip.read(Mc146818::kYear, host) == 24);
	/* Registers C and D are read-only; the 24-hour bit stays set. */
	chip.write(Mc146818::kRegC, 0xff, host);
	chip.write(Mc146818::kRegD, 0x00, host);
	chip.write(Mc146818::kRegB, 0x00, host);
	CHECK(chip.peek(Mc146818::kRegC, host) == 0);
	CHECK(chip.peek(Mc146818::kRegD, host) == 0x80);
	CHECK(chip.peek(Mc146818::kRegB, host) == 0x02);
	/* RAM bytes keep what is written. */
	chip.write(0x40, 0xa5, host);
	CHECK(chip.read(0x40, host) == 0xa5);
}

TEST_CASE("rtc: MC146818 register writes move the clock, invalid BCD is ignored, UIP brackets the update")
{
	int64_t host = kLeapDay * kSec;
	Mc146818 chip(0);
	chip.write(Mc146818::kMinutes, 0x30, host);
	CHECK(chip.read(Mc146818::kMinutes, host) == 0x30);
	CHECK(chip.timeNs(host) - host == (30 - 59) * 60 * kSec);
	chip.write(Mc146818::kHours, 0x4a, host); /* not BCD */
	chip.write(Mc146818::kHours, 0x24, host); /* out of range */
	CHECK(chip.read(Mc146818::kHours, host) == 0x23);
	CHECK((chip.read(Mc146818::kRegA, host + kSec / 2) & Mc146818::kUip) == 0);
	CHECK((chip.read(Mc146818::kRegA, host + kSec - 100'000) & Mc146818::kUip) != 0);
	CHECK((chip.read(Mc146818::kRegA, host + kSec + 1'000'000) & Mc146818::kUip) != 0);
}

TEST_CASE("rtc: SET freezes the time registers; releasing the divider reset starts the next second 500 ms later")
{
	int64_t host = kLeapDay * kSec + kSec / 10;
	Mc146818 chip(0);
	chip.write(Mc146818::kRegB, 0x02 | Mc146818::kSet, host);
	chip.write(Mc146818::kRegA, 0x26 | Mc146818::kDvReset, host);
	CHECK_FALSE(chip.running());
	/* Written field by field; the 31st of February is fine while frozen. */
	chip.write(Mc146818::kDayOfMonth, 0x31, host);
	chip.write(Mc146818::kMonth, 0x01, host);
	chip.write(Mc146818::kHours, 0x12, host);
	chip.write(Mc146818::kMinutes, 0x00, host);
	chip.write(Mc146818::kSeconds, 0x00, host);
	CHECK(chip.read(Mc146818::kSeconds, host + 5 * kSec) == 0x00); /* no updates while SET */
	chip.write(Mc146818::kRegB, 0x02, host + 5 * kSec);
	CHECK_FALSE(chip.running()); /* the divider is still held */
	int64_t release = host + 6 * kSec;
	chip.write(Mc146818::kRegA, 0x26, release);
	REQUIRE(chip.running());
	CHECK(chip.read(Mc146818::kSeconds, release + kSec / 2 - 1000) == 0x00);
	CHECK(chip.read(Mc146818::kSeconds, release + kSec / 2 + 1000) == 0x01);
	CHECK(chip.read(Mc146818::kDayOfMonth, release) == 0x31);
	CHECK(chip.read(Mc146818::kMonth, release) == 0x01);
}

TEST_CASE("rtc: update, periodic and alarm events set the C flags; IRQF only for enabled sources; reading C clears")
{
	int64_t host = kLeapDay * kSec + kSec / 4;
	Mc146818 chip(0);
	chip.advance(host);
	auto e = chip.advance(host + 2 * kSec);
	CHECK(e.update == 2);
	CHECK(e.periodic == 2048); /* 1024 Hz */
	CHECK(e.alarm == 1); /* the power-on alarm registers say 00:00:00, and midnight passed */
	CHECK(chip.peek(Mc146818::kRegC, host) == (Mc146818::kUf | Mc146818::kPf | Mc146818::kAf));
	CHECK_FALSE(chip.irq());
	CHECK(chip.read(Mc146818::kRegC, host + 2 * kSec) == (Mc146818::kUf | Mc146818::kPf | Mc146818::kAf));
	CHECK(chip.peek(Mc146818::kRegC, host) == 0);

	chip.write(Mc146818::kRegB, 0x02 | Mc146818::kUie, host + 2 * kSec);
	CHECK_FALSE(chip.irq());
	auto next = chip.nextInterrupt(host + 2 * kSec);
	REQUIRE(next);
	CHECK(*next == (kLeapDay + 3) * kSec);
	chip.advance(*next);
	CHECK(chip.irq());
	CHECK(chip.read(Mc146818::kRegC, *next) == (Mc146818::kIrqf | Mc146818::kUf | Mc146818::kPf));

	/* Periodic rate from RS: 15 -> 2 Hz, 3 -> 8192 Hz. */
	CHECK(Mc146818::rateHz(15) == 2);
	CHECK(Mc146818::rateHz(3) == 8192);
	CHECK(Mc146818::rateHz(0) == 0);

	/* Alarm 00:00:05 (the next day here), and a don't-care alarm matching every second of minute 00. */
	int64_t t = *next;
	chip.write(Mc146818::kSecondsAlarm, 0x05, t);
	chip.write(Mc146818::kMinutesAlarm, 0x00, t);
	chip.write(Mc146818::kHoursAlarm, 0x00, t);
	chip.write(Mc146818::kRegB, 0x02 | Mc146818::kAie, t);
	auto alarm = chip.nextInterrupt(t);
	REQUIRE(alarm);
	CHECK(*alarm == (kLeapDay + 7) * kSec); /* 2024-03-01 00:00:05 */
	CHECK(chip.advance(*alarm).alarm == 1);
	chip.write(Mc146818::kHoursAlarm, 0xc0, *alarm);
	chip.write(Mc146818::kSecondsAlarm, 0xff, *alarm);
	CHECK(chip.advance(*alarm + 10 * kSec).alarm == 10);
}

TEST_CASE("rtc: RTC_RD_TIME reads the host clock through the registers")
{
	Rtc r;
	int fh = r.open();
	rtc_time tm = r.readTime(fh);
	CHECK(tm.tm_year == 124);
	CHECK(tm.tm_mon == 1);
	CHECK(tm.tm_mday == 29);
	CHECK(tm.tm_hour == 23);
	CHECK(tm.tm_min == 59);
	CHECK(tm.tm_sec == 58);
	CHECK(tm.tm_wday == 4);
	CHECK(tm.tm_yday == 59);
	r.advance(2 * kSec);
	tm = r.readTime(fh);
	CHECK(tm.tm_mon == 2);
	CHECK(tm.tm_mday == 1);
	CHECK(tm.tm_sec == 0);
	/* A FUSE-style (restricted) driver carries it in one round. */
	auto o = r.h->restrictedIoctl(static_cast<uint32_t>(fh), RTC_RD_TIME, {}, sizeof(rtc_time));
	REQUIRE(o->done);
	CHECK(o->result == 0);
	CHECK(o->aux == sizeof(rtc_time));
}

TEST_CASE("rtc: RTC_SET_TIME checks like the kernel, sets through SET/divider reset, and keeps the offset in the state "
	  "file")
{
	auto dir = std::filesystem::temp_directory_path() / fmt::format("devemu-rtc-test-{}", getpid());
	std::filesystem::create_directories(dir);
	std::string state = (dir / "rtc.state").string();
	std::filesystem::remove(state);
	{
		Rtc r({ { "state", state } });
		int fh = r.open();
		CHECK(r.ioctl(fh, RTC_SET_TIME, tmOf(2030, 13, 2, 3, 4, 5)) == -EINVAL); /* tm_mon 12 */
		CHECK(r.ioctl(fh, RTC_SET_TIME, tmOf(2030, 2, 30, 3, 4, 5)) == -EINVAL);
		CHECK(r.ioctl(fh, RTC_SET_TIME, tmOf(1969, 12, 31, 0, 0, 0)) == -EINVAL);
		CHECK(r.ioctl(fh, RTC_SET_TIME, tmOf(2030, 1, 2, 24, 0, 0)) == -EINVAL);
		CHECK(r.ioctl(fh, RTC_SET_TIME, tmOf(2030, 1, 2, 3, 60, 0)) == -EINVAL);
		CHECK(r.ioctl(fh, RTC_SET_TIME, tmOf(2156, 1, 1, 0, 0, 0)) ==
		      -EINVAL); /* beyond the century register */
		CHECK_FALSE(std::filesystem::exists(state));
		REQUIRE(r.ioctl(fh, RTC_SET_TIME, tmOf(2030, 1, 2, 3, 4, 5)) == 0);
		rtc_time tm = r.readTime(fh);
		CHECK(tm.tm_year == 130);
		CHECK(tm.tm_mon == 0);
		CHECK(tm.tm_mday == 2);
		CHECK(tm.tm_hour == 3);
		CHECK(tm.tm_min == 4);
		CHECK(tm.tm_sec == 5);
		/* The first tick comes 500 ms after the set. */
		r.advance(kSec / 2 - 1000);
		CHECK(r.readTime(fh).tm_sec == 5);
		r.advance(2000);
		CHECK(r.readTime(fh).tm_sec == 6);
		CHECK(std::filesystem::exists(state));
		/* Without CAP_SYS_TIME it is EACCES, before anything is read. */
		r.h->release(static_cast<uint32_t>(fh));
		r.h->setCallerCaps(0);
		int user = r.open(1000);
		CHECK(r.ioctl(user, RTC_SET_TIME, uint64_t(0xbad)) == -EACCES);
		CHECK(r.ioctl(user, RTC_RD_TIME) == 0);
	}
	{
		/* A new daemon 100 s later still runs 2030. */
		Rtc r({ { "state", state } }, (kLeapDay + 100) * kSec + kSec / 4);
		rtc_time tm = r.readTime(r.open());
		CHECK(tm.tm_year == 130);
		CHECK(tm.tm_min == 5);
		CHECK(tm.tm_sec == 45);
	}
	{
		std::ofstream(state) << "offset_ns=twelve\n";
		ModelOptions opts("x", "test-rtc", { { "state", state } });
		test::Harness probe("zero");
		/* The factory reads no file: the options are fine, starting the device fails. */
		auto m = ModelRegistry::builtin().find("rtc")->factory(opts, *probe.core_);
		REQUIRE(m != nullptr);
		CHECK(opts.error() == "");
		std::string error;
		CHECK(m->start(error) == -EINVAL);
		CHECK(error == fmt::format("{}:1: expected offset_ns=NUMBER, got 'offset_ns=twelve'", state));
	}
	std::filesystem::remove_all(dir);
}

TEST_CASE("rtc: read() returns the interrupt count and kinds, checks its size, and honours O_NONBLOCK")
{
	Rtc r;
	int fh = r.open();
	auto none = r.h->read(static_cast<uint32_t>(fh), 8, true);
	REQUIRE(none->done);
	CHECK(none->result == -EAGAIN);
	CHECK(r.h->read(static_cast<uint32_t>(fh), 3, true)->result == -EINVAL);
	CHECK(r.h->read(static_cast<uint32_t>(fh), 5, true)->result == -EINVAL);
	CHECK(r.h->poll(static_cast<uint32_t>(fh)) == 0);

	REQUIRE(r.ioctl(fh, RTC_UIE_ON) == 0);
	auto blocked = r.h->read(static_cast<uint32_t>(fh), 8);
	CHECK_FALSE(blocked->done);
	r.advance(kSec / 2); /* 23:59:58.75: no update yet */
	CHECK_FALSE(blocked->done);
	r.advance(kSec / 2);
	REQUIRE(blocked->done);
	CHECK(blocked->result == 8);
	CHECK(irqData(*blocked) == (1 << 8 | RTC_IRQF | RTC_UF));

	/* Three updates between reads are counted; a 4-byte read gets an unsigned int. */
	r.advance(3 * kSec);
	CHECK((r.h->poll(static_cast<uint32_t>(fh)) & POLLIN) != 0);
	auto three = r.h->read(static_cast<uint32_t>(fh), 4);
	REQUIRE(three->done);
	CHECK(three->result == 4);
	CHECK(irqData(*three) == (3 << 8 | RTC_IRQF | RTC_UF));
	CHECK(r.h->poll(static_cast<uint32_t>(fh)) == 0);

	/* A bigger read still returns one unsigned long. */
	r.advance(kSec);
	CHECK(r.h->read(static_cast<uint32_t>(fh), 4096)->result == 8);

	/* Off: nothing more arrives. */
	REQUIRE(r.ioctl(fh, RTC_UIE_OFF) == 0);
	r.advance(5 * kSec);
	CHECK(r.h->read(static_cast<uint32_t>(fh), 8, true)->result == -EAGAIN);
}

TEST_CASE("rtc: update interrupts arrive on the real clock through the model's timer")
{
	test::Harness h("rtc");
	int fh = h.open();
	test::FakeMemory mem;
	REQUIRE(h.ioctl(static_cast<uint32_t>(fh), RTC_UIE_ON, 0, mem) == 0);
	auto r = h.read(static_cast<uint32_t>(fh), 8);
	auto start = std::chrono::steady_clock::now();
	while (!r->done && std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
		h.io_.restart();
		h.io_.run_one_for(std::chrono::milliseconds(50));
	}
	REQUIRE(r->done);
	CHECK(r->result == 8);
	CHECK((irqData(*r) & 0xff) == (RTC_IRQF | RTC_UF));
	CHECK(std::chrono::steady_clock::now() - start <= std::chrono::milliseconds(1100));
}

TEST_CASE("rtc: periodic interrupts: rates are powers of two from 2 to 8192 Hz, with the kernel's permission checks")
{
	Rtc r;
	int fh = r.open();
	REQUIRE(r.ioctl(fh, RTC_IRQP_READ) == 0);
	CHECK(r.out<unsigned long>() == 1024);
	CHECK(r.ioctl(fh, RTC_IRQP_SET, uint64_t(0)) == -EINVAL);
	CHECK(r.ioctl(fh, RTC_IRQP_SET, uint64_t(1)) == -EINVAL);
	CHECK(r.ioctl(fh, RTC_IRQP_SET, uint64_t(3)) == -EINVAL);
	CHECK(r.ioctl(fh, RTC_IRQP_SET, uint64_t(100)) == -EINVAL);
	CHECK(r.ioctl(fh, RTC_IRQP_SET, uint64_t(16384)) == -EINVAL);
	REQUIRE(r.ioctl(fh, RTC_IRQP_SET, uint64_t(64)) == 0);
	REQUIRE(r.ioctl(fh, RTC_IRQP_READ) == 0);
	CHECK(r.out<unsigned long>() == 64);
	CHECK(r.inject({ "peek", "0x0a" }) == "0x2a"); /* RS = 10 */
	REQUIRE(r.ioctl(fh, RTC_PIE_ON) == 0);
	r.advance(kSec / 2);
	auto o = r.h->read(static_cast<uint32_t>(fh), 8);
	REQUIRE(o->done);
	CHECK(irqData(*o) == (32 << 8 | RTC_IRQF | RTC_PF));
	REQUIRE(r.ioctl(fh, RTC_PIE_OFF) == 0);
	r.h->release(static_cast<uint32_t>(fh));

	/* Above max_user_freq (64) only a caller with CAP_SYS_RESOURCE may go. */
	constexpr uint64_t kSysResource = 1ULL << CAP_SYS_RESOURCE;
	r.h->setCallerCaps(~kSysResource);
	int user = r.open(1000);
	CHECK(r.ioctl(user, RTC_IRQP_SET, uint64_t(128)) == -EACCES);
	CHECK(r.ioctl(user, RTC_IRQP_SET, uint64_t(32)) == 0);
	CHECK(r.ioctl(user, RTC_PIE_ON) == 0);
	CHECK(r.ioctl(user, RTC_PIE_OFF) == 0);
	r.h->release(static_cast<uint32_t>(user));
	r.h->setCallerCaps(kSysResource);
	int root = r.open();
	CHECK(r.ioctl(root, RTC_IRQP_SET, uint64_t(8192)) == 0);
	r.h->release(static_cast<uint32_t>(root));
	r.h->setCallerCaps(0);
	user = r.open(1000);
	CHECK(r.ioctl(user, RTC_PIE_ON) == -EACCES);
}

TEST_CASE("rtc: privilege is the ioctl caller's capability, not the opener's: root's file passed on, a user's file "
	  "used by a privileged process, and /proc asked when the driver does not report capabilities")
{
	Rtc r;
	constexpr uint64_t kSysTime = 1ULL << CAP_SYS_TIME;
	rtc_time when = tmOf(2031, 5, 6, 7, 8, 9);
	/* Opened by root, used by a caller without CAP_SYS_TIME (the fd inherited by a dropped child). */
	int fh = r.open(0);
	r.h->setCallerCaps(~kSysTime);
	CHECK(r.ioctl(fh, RTC_SET_TIME, when) == -EACCES);
	CHECK(r.readTime(fh).tm_year == 124);
	/* The same file, now used by a caller with it: allowed. */
	r.h->setCallerCaps(kSysTime);
	CHECK(r.ioctl(fh, RTC_SET_TIME, when) == 0);
	CHECK(r.readTime(fh).tm_year == 131);
	r.h->release(static_cast<uint32_t>(fh));
	/* Opened by an ordinary user, used by a process holding CAP_SYS_TIME: allowed, as on a real rtc. */
	fh = r.open(1000);
	CHECK(r.ioctl(fh, RTC_SET_TIME, tmOf(2032, 1, 1, 0, 0, 0)) == 0);
	CHECK(r.readTime(fh).tm_year == 132);
	/* No report from the driver (CUSE, FUSE) and no pid to ask /proc about: refused, never assumed. */
	r.h->setCallerCaps(std::nullopt);
	CHECK(r.ioctl(fh, RTC_SET_TIME, when) == -EACCES);
	CHECK(r.ioctl(fh, RTC_RD_TIME) == 0);
}

TEST_CASE("caller: procCapabilities() reads CapEff of a thread in the daemon's user namespace from /proc")
{
	/* This test process itself: /proc's view must be the capget() one. */
	auto mine = procCapabilities(getpid());
	REQUIRE(mine);
	std::ifstream status("/proc/self/status");
	std::string line;
	uint64_t eff = 0;
	while (std::getline(status, line))
		if (line.rfind("CapEff:", 0) == 0)
			eff = std::stoull(line.substr(7), nullptr, 16);
	CHECK(*mine == eff);
	CHECK_FALSE(procCapabilities(0));
	CHECK_FALSE(procCapabilities(-1));
	CHECK_FALSE(procCapabilities(0x3fffffff)); /* above pid_max: no such process */
	OpenFile f;
	f.callerPid = getpid();
	CHECK(callerCapable(f, CAP_SYS_TIME) == bool(eff >> CAP_SYS_TIME & 1));
	f.callerCaps = 0;
	CHECK_FALSE(callerCapable(f, CAP_SYS_TIME));
	CHECK_FALSE(callerCapable(f, 64));
}

TEST_CASE("rtc: alarms: RTC_ALM_SET within 24 hours, RTC_WKALM_SET/RD, AIE, one-shot delivery")
{
	Rtc r;
	int fh = r.open();
	/* Never set: the epoch, disabled. */
	REQUIRE(r.ioctl(fh, RTC_WKALM_RD) == 0);
	CHECK(r.out<rtc_wkalrm>().enabled == 0);
	CHECK(r.out<rtc_wkalrm>().time.tm_year == 70);

	/* 23:00:00 has passed today (2024-02-29 23:59:58): it means tomorrow. */
	REQUIRE(r.ioctl(fh, RTC_ALM_SET, tmOf(1900, 1, 1, 23, 0, 0)) == 0);
	REQUIRE(r.ioctl(fh, RTC_ALM_READ) == 0);
	rtc_time alm = r.out<rtc_time>();
	CHECK(alm.tm_mon == 2);
	CHECK(alm.tm_mday == 1);
	CHECK(alm.tm_hour == 23);
	REQUIRE(r.ioctl(fh, RTC_WKALM_RD) == 0);
	CHECK(r.out<rtc_wkalrm>().enabled == 0); /* RTC_ALM_SET does not enable it */
	CHECK(r.ioctl(fh, RTC_ALM_SET, tmOf(1900, 1, 1, 25, 0, 0)) == -EINVAL);

	/* 23:59:59 today is one second ahead. */
	REQUIRE(r.ioctl(fh, RTC_ALM_SET, tmOf(1900, 1, 1, 23, 59, 59)) == 0);
	REQUIRE(r.ioctl(fh, RTC_AIE_ON) == 0);
	REQUIRE(r.ioctl(fh, RTC_WKALM_RD) == 0);
	CHECK(r.out<rtc_wkalrm>().enabled == 1);
	CHECK(r.h->read(static_cast<uint32_t>(fh), 8, true)->result == -EAGAIN);
	r.advance(kSec);
	auto o = r.h->read(static_cast<uint32_t>(fh), 8, true);
	REQUIRE(o->result == 8);
	CHECK(irqData(*o) == (1 << 8 | RTC_IRQF | RTC_AF));
	REQUIRE(r.ioctl(fh, RTC_WKALM_RD) == 0);
	CHECK(r.out<rtc_wkalrm>().enabled == 0); /* one-shot */
	CHECK((std::stoi(r.inject({ "peek", "0x0b" }), nullptr, 16) & Mc146818::kAie) == 0);

	/* A wake alarm two days ahead: the chip's hh:mm:ss alarm matches tomorrow, the date only later. */
	rtc_wkalrm wk{};
	wk.enabled = 1;
	wk.time = tmOf(2024, 3, 3, 0, 0, 5);
	REQUIRE(r.ioctl(fh, RTC_WKALM_SET, wk) == 0);
	for (int day = 0; day < 2; day++) {
		r.advance(24 * 3600 * kSec);
		CHECK(r.h->read(static_cast<uint32_t>(fh), 8, true)->result == -EAGAIN);
	}
	r.advance(24 * 3600 * kSec);
	CHECK(irqData(*r.h->read(static_cast<uint32_t>(fh), 8, true)) == (1 << 8 | RTC_IRQF | RTC_AF));

	/* An enabled alarm already due fires at once; invalid times are EINVAL. */
	wk.time = tmOf(2000, 1, 1, 0, 0, 0);
	REQUIRE(r.ioctl(fh, RTC_WKALM_SET, wk) == 0);
	CHECK((r.h->poll(static_cast<uint32_t>(fh)) & POLLIN) != 0);
	CHECK(irqData(*r.h->read(static_cast<uint32_t>(fh), 8, true)) == (1 << 8 | RTC_IRQF | RTC_AF));
	wk.time = tmOf(2024, 2, 30, 0, 0, 0);
	CHECK(r.ioctl(fh, RTC_WKALM_SET, wk) == -EINVAL);
	/* The alarm survives close; AIE_OFF disarms it. */
	wk.time = tmOf(2030, 1, 1, 0, 0, 0);
	REQUIRE(r.ioctl(fh, RTC_WKALM_SET, wk) == 0);
	r.h->release(static_cast<uint32_t>(fh));
	fh = r.open();
	REQUIRE(r.ioctl(fh, RTC_WKALM_RD) == 0);
	CHECK(r.out<rtc_wkalrm>().enabled == 1);
	REQUIRE(r.ioctl(fh, RTC_AIE_OFF) == 0);
	REQUIRE(r.ioctl(fh, RTC_WKALM_RD) == 0);
	CHECK(r.out<rtc_wkalrm>().enabled == 0);
}

TEST_CASE("rtc: one opener at a time; closing turns update and periodic interrupts off and drops old data")
{
	Rtc r;
	int fh = r.open();
	CHECK(r.open() == -EBUSY);
	REQUIRE(r.ioctl(fh, RTC_UIE_ON) == 0);
	REQUIRE(r.ioctl(fh, RTC_PIE_ON) == 0);
	r.advance(2 * kSec);
	r.h->release(static_cast<uint32_t>(fh));
	CHECK(r.inject({ "status" }).find("uie=0 pie=0") != std::string::npos);
	fh = r.open();
	CHECK(fh >= 0);
	CHECK(r.h->read(static_cast<uint32_t>(fh), 8, true)->result == -EAGAIN);
}

TEST_CASE("rtc: uie=off makes RTC_UIE_ON EINVAL (clients busy-wait) while RTC_UIE_OFF still succeeds")
{
	Rtc r(ModelOptions::Pairs{ { "uie", "off" } });
	int fh = r.open();
	CHECK(r.ioctl(fh, RTC_UIE_ON) == -EINVAL);
	CHECK(r.ioctl(fh, RTC_UIE_OFF) == 0);
	rtc_param p{};
	p.param = RTC_PARAM_FEATURES;
	REQUIRE(r.ioctl(fh, RTC_PARAM_GET, p) == 0);
	CHECK(r.out<rtc_param>().uvalue == (1u << RTC_FEATURE_ALARM));
}

TEST_CASE("rtc: bad pointers, unknown ioctls and parameters get the kernel's errnos; writes are EINVAL")
{
	Rtc r;
	int fh = r.open();
	CHECK(r.ioctl(fh, RTC_RD_TIME, uint64_t(0xdead0000)) == -EFAULT);
	CHECK(r.ioctl(fh, RTC_SET_TIME, uint64_t(0xdead0000)) == -EFAULT);
	CHECK(r.ioctl(fh, RTC_WKALM_SET, uint64_t(0xdead0000)) == -EFAULT);
	CHECK(r.ioctl(fh, RTC_EPOCH_READ) == -ENOTTY);
	CHECK(r.ioctl(fh, RTC_VL_READ) == -ENOTTY);
	CHECK(r.ioctl(fh, _IOR('p', 0x09, int)) == -ENOTTY); /* RTC_RD_TIME with the wrong size */
	rtc_param p{};
	p.param = RTC_PARAM_FEATURES;
	REQUIRE(r.ioctl(fh, RTC_PARAM_GET, p) == 0);
	CHECK(r.out<rtc_param>().uvalue == (1u << RTC_FEATURE_ALARM | 1u << RTC_FEATURE_UPDATE_INTERRUPT));
	p.index = 1;
	CHECK(r.ioctl(fh, RTC_PARAM_GET, p) == -EINVAL);
	p.index = 0;
	p.param = RTC_PARAM_CORRECTION;
	CHECK(r.ioctl(fh, RTC_PARAM_GET, p) == -EINVAL);
	CHECK(r.ioctl(fh, RTC_PARAM_SET, p) == -EINVAL);
	CHECK(r.h->write(static_cast<uint32_t>(fh), test::bytes("x"))->result == -EINVAL);
	/* The device still works. */
	CHECK(r.readTime(fh).tm_year == 124);
}

TEST_CASE("rtc: inject verbs: status, regs, peek and poke (binary mode shows in RTC_RD_TIME unchanged)")
{
	Rtc r;
	int fh = r.open();
	CHECK(r.inject({ "status" }).find("time=2024-02-29 23:59:58") == 0);
	CHECK(r.inject({ "regs" }).find("0x0b b=0x02") != std::string::npos);
	r.inject({ "poke", "0x0b", "0x06" });
	CHECK(r.inject({ "peek", "0" }) == "0x3a"); /* 58 in binary */
	CHECK(r.readTime(fh).tm_sec == 58);
	std::string reply;
	CHECK(r.h->core_->inject({ "poke", "0x80", "1" }, reply) == -EINVAL);
	CHECK(r.h->core_->inject({ "frobnicate" }, reply) == -EINVAL);
}

TEST_CASE("rtc: a 32-bit caller's RTC_IRQP_READ/SET (4-byte size field) read and set the rate in 4 bytes")
{
	Rtc r;
	int fh = r.open();
	const uint32_t read32 = _IOR('p', 0x0b, uint32_t), set32 = _IOW('p', 0x0c, uint32_t);
	r.h->setCompat(true);
	const std::array<uint32_t, 2> fill{ 0, 0xa5a5a5a5u };
	std::memcpy(r.mem.regions[Rtc::kArg].data(), fill.data(), sizeof(fill));
	REQUIRE(r.ioctl(fh, read32) == 0);
	auto got = r.out<std::array<uint32_t, 2>>();
	CHECK(got[0] == 1024);
	CHECK(got[1] == 0xa5a5a5a5u); /* nothing written past the 4 bytes */
	CHECK(r.ioctl(fh, set32, uint64_t(100)) == -EINVAL);
	REQUIRE(r.ioctl(fh, set32, uint64_t(256)) == 0);
	REQUIRE(r.ioctl(fh, RTC_IRQP_READ) == 0);
	CHECK(r.out<unsigned long>() == 256);
}
