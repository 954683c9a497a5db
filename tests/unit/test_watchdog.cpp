// SPDX-License-Identifier: MIT
// Unit tests of the watchdog model: the countdown timer block, and the <linux/watchdog.h> ABI of watchdog_dev on top.
#include "harness.h"

#include "watchdog/watchdog.h"
#include "watchdog/watchdog_timer.h"

#include <fmt/core.h>

#include <linux/watchdog.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

using namespace devemu;

namespace {

constexpr int64_t kSec = 1'000'000'000;

int64_t gMono = 0;

struct RegisterTestWatchdog {
	RegisterTestWatchdog()
	{
		ModelRegistry::builtin().add({ "test-watchdog", "watchdog on a fake monotonic clock", "",
					       [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
						       WatchdogConfig c;
						       c.clock = [] { return gMono; };
						       c.timeout = static_cast<unsigned>(
							       opts.number("timeout", 60, 1, 65535));
						       c.nowayout = opts.flag("nowayout", false);
						       return makeWatchdogModel(ctx, c);
					       } });
	}
} registerTestWatchdog;

struct Wdt {
	static constexpr uint64_t kArg = 0x20000;

	explicit Wdt(ModelOptions::Pairs options = {}, std::string model = "test-watchdog")
	{
		gMono = 1000 * kSec;
		h = std::make_unique<test::Harness>(std::move(model), std::move(options));
		mem.regions[kArg].resize(64);
	}
	int open() { return h->open(); }
	uint32_t fh(int f) { return static_cast<uint32_t>(f); }
	int ioctl(int f, uint32_t cmd, int in)
	{
		std::memcpy(mem.regions[kArg].data(), &in, sizeof(in));
		return h->ioctl(fh(f), cmd, kArg, mem);
	}
	int ioctl(int f, uint32_t cmd, uint64_t arg = kArg) { return h->ioctl(fh(f), cmd, arg, mem); }
	int outInt() const
	{
		int v;
		std::memcpy(&v, mem.regions.at(kArg).data(), sizeof(v));
		return v;
	}
	int get(int f, uint32_t cmd)
	{
		REQUIRE(ioctl(f, cmd) == 0);
		return outInt();
	}
	void write(int f, std::string_view s) { REQUIRE(h->write(fh(f), test::bytes(s))->result == int(s.size())); }
	std::string status()
	{
		std::string reply;
		REQUIRE(h->core_->inject({ "status" }, reply) == 0);
		return reply;
	}
	uint32_t word(unsigned i) const { return h->window_.shadow().status[i]; }

	std::unique_ptr<test::Harness> h;
	test::FakeMemory mem;
};

} // namespace

TEST_CASE("watchdog: the timer block counts down from LOAD, reloads on the KICK magic, latches pre-timeout and reset")
{
	WatchdogTimer t;
	int64_t now = 5 * kSec;
	CHECK(t.read(WatchdogTimer::kId, now) == WatchdogTimer::kIdValue);
	CHECK(t.read(WatchdogTimer::kLoad, now) == 60000);
	CHECK(t.read(WatchdogTimer::kValue, now) == 60000); /* stopped: parked at LOAD */
	CHECK_FALSE(t.nextEvent(now));
	t.write(WatchdogTimer::kLoad, 10000, now);
	t.write(WatchdogTimer::kPreload, 3000, now);
	t.write(WatchdogTimer::kControl, WatchdogTimer::kEn | WatchdogTimer::kPreIntEn | WatchdogTimer::kResEn, now);
	CHECK(*t.nextEvent(now) == now + 7 * kSec);
	CHECK(t.read(WatchdogTimer::kValue, now + 4 * kSec) == 6000);
	t.write(WatchdogTimer::kKick, 0x1234, now + 4 * kSec); /* not the magic: ignored */
	CHECK(t.read(WatchdogTimer::kValue, now + 4 * kSec) == 6000);
	t.write(WatchdogTimer::kKick, WatchdogTimer::kKickMagic, now + 4 * kSec);
	CHECK(t.read(WatchdogTimer::kValue, now + 4 * kSec) == 10000);
	now += 4 * kSec;
	t.advance(now + 7 * kSec);
	auto e = t.takeEvents();
	CHECK(e.pretimeout);
	CHECK_FALSE(e.reset);
	CHECK(t.read(WatchdogTimer::kStatus, now + 7 * kSec) == WatchdogTimer::kStatusPre);
	CHECK(*t.nextEvent(now + 7 * kSec) == now + 10 * kSec);
	t.advance(now + 10 * kSec);
	e = t.takeEvents();
	CHECK(e.reset);
	CHECK(t.read(WatchdogTimer::kStatus, now) == (WatchdogTimer::kStatusPre | WatchdogTimer::kStatusTimeout));
	CHECK(t.read(WatchdogTimer::kResets, now) == 1);
	CHECK(t.read(WatchdogTimer::kControl, now) == 0); /* the reset stops the block */
	CHECK_FALSE(t.takeEvents().reset);
	t.write(WatchdogTimer::kStatus, WatchdogTimer::kStatusPre, now); /* write 1 to clear */
	CHECK(t.read(WatchdogTimer::kStatus, now) == WatchdogTimer::kStatusTimeout);
	/* Without RESEN the count just stops at zero. */
	t.write(WatchdogTimer::kControl, WatchdogTimer::kEn, now);
	t.advance(now + 11 * kSec);
	CHECK_FALSE(t.takeEvents().reset);
	CHECK(t.read(WatchdogTimer::kResets, now) == 1);
}

TEST_CASE("watchdog: opening starts the countdown; one opener at a time; writes ping")
{
	Wdt w;
	CHECK(w.status().find("state=stopped") == 0);
	int f = w.open();
	CHECK(w.status().find("state=running timeleft=60 ") == 0);
	CHECK(w.open() == -EBUSY);
	gMono += 30 * kSec;
	CHECK(w.get(f, WDIOC_GETTIMELEFT) == 30);
	w.write(f, "x");
	CHECK(w.get(f, WDIOC_GETTIMELEFT) == 60);
	gMono += 10 * kSec;
	REQUIRE(w.ioctl(f, WDIOC_KEEPALIVE) == 0);
	CHECK(w.get(f, WDIOC_GETTIMELEFT) == 60);
	CHECK(w.word(0) == 1);
	CHECK(w.word(5) == 1);
	/* No read op, and the VFS's default poll mask. */
	CHECK(w.h->read(w.fh(f), 1)->result == -EINVAL);
	CHECK(w.h->poll(w.fh(f)) == (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM));
}

TEST_CASE("watchdog: the magic close character disarms it; without it the count runs out after close")
{
	Wdt w(ModelOptions::Pairs{ { "timeout", "10" } });
	int f = w.open();
	w.write(f, "V");
	w.h->release(w.fh(f));
	CHECK(w.status().find("state=stopped") == 0);
	gMono += 100 * kSec;
	CHECK(w.status().find("expiries=0") != std::string::npos);

	/* A later write without 'V' takes the magic back. */
	f = w.open();
	w.write(f, "V");
	w.write(f, "ping");
	w.h->release(w.fh(f));
	CHECK(w.status().find("state=running") == 0);
	gMono += 9 * kSec;
	CHECK(w.status().find("expiries=0") != std::string::npos);
	gMono += 2 * kSec;
	std::string s = w.status();
	CHECK(s.find("state=stopped") == 0);
	CHECK(s.find("expiries=1 bootstatus=0x20") != std::string::npos);
	CHECK(w.word(0) == 0);
	CHECK(w.word(3) == 1);
	CHECK(w.word(4) == WDIOF_CARDRESET);

	/* The boot status says the card reset the machine, in GETBOOTSTATUS and GETSTATUS. */
	f = w.open();
	CHECK(w.get(f, WDIOC_GETBOOTSTATUS) == WDIOF_CARDRESET);
	CHECK((w.get(f, WDIOC_GETSTATUS) & WDIOF_CARDRESET) != 0);
	std::string reply;
	REQUIRE(w.h->core_->inject({ "clear" }, reply) == 0);
	CHECK(w.get(f, WDIOC_GETBOOTSTATUS) == 0);
}

TEST_CASE("watchdog: nowayout keeps it running through the magic close and refuses DISABLECARD")
{
	Wdt w(ModelOptions::Pairs{ { "timeout", "5" }, { "nowayout", "yes" } });
	int f = w.open();
	CHECK(w.ioctl(f, WDIOC_SETOPTIONS, WDIOS_DISABLECARD) == -EBUSY);
	w.write(f, "V");
	w.h->release(w.fh(f));
	CHECK(w.status().find("state=running") == 0);
	gMono += 6 * kSec;
	CHECK(w.status().find("expiries=1") != std::string::npos);
}

TEST_CASE("watchdog: SETOPTIONS stops and starts the card; neither flag is ENOTTY")
{
	Wdt w;
	int f = w.open();
	REQUIRE(w.ioctl(f, WDIOC_SETOPTIONS, WDIOS_DISABLECARD) == 0);
	CHECK(w.status().find("state=stopped") == 0);
	gMono += 100 * kSec;
	CHECK(w.status().find("expiries=0") != std::string::npos);
	REQUIRE(w.ioctl(f, WDIOC_SETOPTIONS, WDIOS_ENABLECARD) == 0);
	CHECK(w.status().find("state=running timeleft=60") == 0);
	CHECK(w.ioctl(f, WDIOC_SETOPTIONS, 0) == -ENOTTY);
	CHECK(w.ioctl(f, WDIOC_SETOPTIONS, WDIOS_TEMPPANIC) == -ENOTTY);
	/* A stopped watchdog closes quietly even without the magic. */
	REQUIRE(w.ioctl(f, WDIOC_SETOPTIONS, WDIOS_DISABLECARD) == 0);
	w.h->release(w.fh(f));
	CHECK(w.status().find("state=stopped") == 0);
}

TEST_CASE("watchdog: timeouts and pre-timeouts are checked like watchdog_dev")
{
	Wdt w;
	int f = w.open();
	CHECK(w.get(f, WDIOC_GETTIMEOUT) == 60);
	CHECK(w.get(f, WDIOC_GETPRETIMEOUT) == 0);
	CHECK(w.ioctl(f, WDIOC_SETTIMEOUT, 0) == -EINVAL);
	CHECK(w.ioctl(f, WDIOC_SETTIMEOUT, 65536) == -EINVAL);
	CHECK(w.ioctl(f, WDIOC_SETTIMEOUT, -1) == -EINVAL);
	gMono += 20 * kSec;
	REQUIRE(w.ioctl(f, WDIOC_SETTIMEOUT, 30) == 0);
	CHECK(w.outInt() == 30); /* _IOWR: the new timeout comes back */
	CHECK(w.get(f, WDIOC_GETTIMELEFT) == 30); /* and it pinged */
	CHECK(w.ioctl(f, WDIOC_SETPRETIMEOUT, 30) == -EINVAL);
	REQUIRE(w.ioctl(f, WDIOC_SETPRETIMEOUT, 10) == 0);
	CHECK(w.get(f, WDIOC_GETPRETIMEOUT) == 10);
	/* The pre-timeout fires 10 s before expiry, and a shorter timeout drops it. */
	gMono += 21 * kSec;
	std::string regs;
	REQUIRE(w.h->core_->inject({ "regs" }, regs) == 0);
	CHECK(regs.find("status=0x1") != std::string::npos);
	REQUIRE(w.ioctl(f, WDIOC_SETTIMEOUT, 10) == 0);
	CHECK(w.get(f, WDIOC_GETPRETIMEOUT) == 0);
	CHECK(w.word(1) == 10);
	CHECK(w.word(2) == 0);
}

TEST_CASE("watchdog: GETSUPPORT and GETSTATUS report identity, options, magic close and one keepalive per ping")
{
	Wdt w;
	int f = w.open();
	REQUIRE(w.ioctl(f, WDIOC_GETSUPPORT) == 0);
	watchdog_info info;
	std::memcpy(&info, w.mem.regions[Wdt::kArg].data(), sizeof(info));
	CHECK(std::string(reinterpret_cast<char *>(info.identity)) == "devemu watchdog");
	CHECK(info.options ==
	      (WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING | WDIOF_PRETIMEOUT | WDIOF_CARDRESET));
	CHECK(w.get(f, WDIOC_GETSTATUS) == WDIOF_KEEPALIVEPING); /* the start counts as a ping */
	CHECK(w.get(f, WDIOC_GETSTATUS) == 0);
	w.write(f, "V");
	CHECK(w.get(f, WDIOC_GETSTATUS) == (WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING));
	CHECK(w.get(f, WDIOC_GETSTATUS) == WDIOF_MAGICCLOSE);
}

TEST_CASE("watchdog: bad pointers are EFAULT, unknown ioctls ENOTTY, and a FUSE-style driver carries SETTIMEOUT")
{
	Wdt w;
	int f = w.open();
	CHECK(w.ioctl(f, WDIOC_GETTIMEOUT, uint64_t(0xdead0000)) == -EFAULT);
	CHECK(w.ioctl(f, WDIOC_SETTIMEOUT, uint64_t(0xdead0000)) == -EFAULT);
	CHECK(w.ioctl(f, WDIOC_GETTEMP) == -ENOTTY);
	CHECK(w.ioctl(f, _IOR('W', 7, long)) == -ENOTTY); /* GETTIMEOUT with the wrong size */
	int v = 12;
	auto o = w.h->restrictedIoctl(w.fh(f), WDIOC_SETTIMEOUT, std::as_bytes(std::span(&v, 1)), sizeof(int));
	REQUIRE(o->done);
	CHECK(o->result == 0);
	CHECK(w.get(f, WDIOC_GETTIMEOUT) == 12);
	/* The failed GETSTATUS round did not eat the keepalive flag. */
	CHECK(w.get(f, WDIOC_GETSTATUS) == WDIOF_KEEPALIVEPING);
}

TEST_CASE("watchdog: on the real clock, expiry fires after the pings stop and runs on_expiry without blocking")
{
	auto dir = std::filesystem::temp_directory_path() / fmt::format("devemu-wdt-test-{}", getpid());
	std::filesystem::create_directories(dir);
	auto out = dir / "fired";
	Wdt w({ { "timeout", "1" },
		{ "on_expiry", fmt::format("sleep 0.2; echo $DEVEMU_DEVICE $DEVEMU_EXPIRIES > {}", out.string()) } },
	      "watchdog");
	int f = w.open();
	auto start = std::chrono::steady_clock::now();
	/* A keepalive loop keeps it alive past its timeout... */
	while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1500)) {
		w.write(f, "k");
		w.h->io_.restart();
		w.h->io_.run_for(std::chrono::milliseconds(100));
	}
	CHECK(w.status().find("expiries=0") != std::string::npos);
	/* ...and once it stops, the timer expires it and the command runs. */
	w.h->release(w.fh(f));
	auto stopped = std::chrono::steady_clock::now();
	bool expired = false;
	while (std::chrono::steady_clock::now() - stopped < std::chrono::seconds(3) && !std::filesystem::exists(out)) {
		w.h->io_.restart();
		w.h->io_.run_for(std::chrono::milliseconds(20));
		if (!expired && w.word(3) == 1) {
			expired = true;
			CHECK(std::chrono::steady_clock::now() - stopped < std::chrono::milliseconds(1300));
			CHECK_FALSE(std::filesystem::exists(out)); /* the daemon did not wait for the command */
		}
	}
	CHECK(expired);
	/* Give the shell a moment to finish writing. */
	for (int i = 0; i < 50; i++) {
		std::string line;
		std::getline(std::ifstream(out), line);
		if (line == "test 1")
			break;
		usleep(20000);
	}
	std::string line;
	std::getline(std::ifstream(out), line);
	CHECK(line == "test 1");
	std::filesystem::remove_all(dir);
}

TEST_CASE("watchdog: inject expire takes the expiry path at once; inject clear resets the boot status")
{
	Wdt w(ModelOptions::Pairs{ { "timeout", "20" } });
	std::string reply;
	CHECK(w.h->core_->inject({ "expire" }, reply) == -EINVAL); /* not running */
	int f = w.open();
	REQUIRE(w.h->core_->inject({ "expire" }, reply) == 0);
	CHECK(reply == "expired (expiries=1)");
	CHECK(w.status() ==
	      "state=stopped timeleft=20 timeout=20 pretimeout=0 expiries=1 bootstatus=0x20 nowayout=0 open=1");
	/* Pings on the still-open file do nothing until it is started again. */
	w.write(f, "x");
	CHECK(w.status().find("state=stopped") == 0);
	REQUIRE(w.ioctl(f, WDIOC_SETOPTIONS, WDIOS_ENABLECARD) == 0);
	CHECK(w.status().find("state=running timeleft=20") == 0);
	REQUIRE(w.h->core_->inject({ "clear" }, reply) == 0);
	CHECK(w.get(f, WDIOC_GETBOOTSTATUS) == 0);
	CHECK(w.h->core_->inject({ "bogus" }, reply) == -EINVAL);
}
