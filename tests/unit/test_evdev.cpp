// SPDX-License-Identifier: MIT
// Unit tests of the evdev model: capability ioctls, event framing, per-open queues, grab, revoke, keymap, autorepeat.
#include "harness.h"

#include <fmt/core.h>

#include <linux/input.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>

#include <chrono>

using namespace devemu;

namespace {

constexpr uint64_t kArg = 0x1000;
constexpr uint64_t kCodes = 0x4000;
constexpr uint64_t kBad = 0xdead0000;

struct Ev {
	uint16_t type;
	uint16_t code;
	int32_t value;
	bool operator==(const Ev &) const = default;
};

doctest::String toString(const Ev &e)
{
	return fmt::format("{{{}, {}, {}}}", e.type, e.code, e.value).c_str();
}

struct Input {
	Input(std::initializer_list<std::pair<std::string, std::string>> options = {})
		: h("evdev", ModelOptions::Pairs(options))
	{}

	uint32_t open() { return static_cast<uint32_t>(h.open()); }

	/* An ioctl whose argument is a buffer of len bytes at kArg; the buffer comes back in out. */
	int ioctl(uint32_t fh, uint32_t cmd, size_t len, std::vector<std::byte> *out = nullptr,
		  std::vector<std::byte> in = {})
	{
		in.resize(len, std::byte{ 0xaa });
		mem.regions[kArg] = in;
		int ret = h.ioctl(fh, cmd, kArg, mem);
		if (out)
			*out = mem.regions[kArg];
		return ret;
	}
	int ioctlValue(uint32_t fh, uint32_t cmd, uint64_t arg) { return h.ioctl(fh, cmd, arg, mem); }
	template<typename T>
	int ioctlIn(uint32_t fh, uint32_t cmd, const T &value)
	{
		auto b = std::as_bytes(std::span(&value, 1));
		return ioctl(fh, cmd, sizeof(T), nullptr, { b.begin(), b.end() });
	}
	template<typename T>
	T ioctlOut(uint32_t fh, uint32_t cmd, int expect = 0)
	{
		std::vector<std::byte> out;
		CHECK(ioctl(fh, cmd, sizeof(T), &out) == expect);
		T v;
		std::memcpy(&v, out.data(), sizeof(T));
		return v;
	}

	std::string inject(std::vector<std::string> args, int expect = 0)
	{
		std::string reply;
		CHECK_MESSAGE(h.core_->inject(args, reply) == expect, reply);
		return reply;
	}

	/* Everything a non-blocking reader gets now. */
	std::vector<Ev> events(uint32_t fh, std::vector<input_event> *raw = nullptr)
	{
		std::vector<Ev> out;
		for (;;) {
			auto r = h.read(fh, 64 * sizeof(input_event), true);
			REQUIRE(r->done);
			if (r->result == -EAGAIN)
				return out;
			REQUIRE(r->result > 0);
			REQUIRE(r->result % sizeof(input_event) == 0);
			for (size_t i = 0; i < r->data.size(); i += sizeof(input_event)) {
				input_event e;
				std::memcpy(&e, r->data.data() + i, sizeof(e));
				out.push_back({ e.type, e.code, e.value });
				if (raw)
					raw->push_back(e);
			}
		}
	}

	test::Harness h;
	test::FakeMemory mem;
};

const Ev kSyn{ EV_SYN, SYN_REPORT, 0 };

std::vector<Ev> tap(uint16_t key, int scan)
{
	return { { EV_MSC, MSC_SCAN, scan }, { EV_KEY, key, 1 }, kSyn,
		 { EV_MSC, MSC_SCAN, scan }, { EV_KEY, key, 0 }, kSyn };
}

bool bit(const std::vector<std::byte> &bits, unsigned n)
{
	return n / 8 < bits.size() && (static_cast<uint8_t>(bits[n / 8]) >> (n % 8)) & 1;
}

} // namespace

TEST_CASE("evdev: version, id, and the strings: length-limited, NUL included, ENOENT when absent")
{
	Input in({ { "name", "Test Keyboard" } });
	uint32_t fh = in.open();
	CHECK(in.ioctlOut<int>(fh, EVIOCGVERSION) == EV_VERSION);
	auto id = in.ioctlOut<input_id>(fh, EVIOCGID);
	CHECK(id.bustype == BUS_VIRTUAL);
	CHECK(id.product == 1);

	std::vector<std::byte> out;
	CHECK(in.ioctl(fh, EVIOCGNAME(256), 256, &out) == 14);
	CHECK(std::string(reinterpret_cast<const char *>(out.data())) == "Test Keyboard");
	CHECK(out[14] == std::byte{ 0xaa }); /* nothing written past the NUL */
	CHECK(in.ioctl(fh, EVIOCGNAME(4), 4, &out) == 4);
	CHECK(test::text(out) == "Test");
	CHECK(in.ioctl(fh, EVIOCGNAME(0), 0, &out) == 0);
	CHECK(in.ioctl(fh, EVIOCGPHYS(64), 64, &out) == static_cast<int>(std::string("devemu/test/input0").size() + 1));
	CHECK(in.ioctl(fh, EVIOCGUNIQ(64), 64, &out) == -ENOENT);
	CHECK(in.ioctlValue(fh, EVIOCGNAME(64), kBad) == -EFAULT);
	CHECK(in.ioctlValue(fh, EVIOCGID, kBad) == -EFAULT);

	Input withUniq({ { "uniq", "SN-1" } });
	fh = withUniq.open();
	CHECK(withUniq.ioctl(fh, EVIOCGUNIQ(64), 64, &out) == 5);
}

TEST_CASE("evdev: EVIOCGBIT returns the kernel's bitmap lengths cut to the asked size")
{
	Input in;
	uint32_t fh = in.open();
	std::vector<std::byte> out;
	CHECK(in.ioctl(fh, EVIOCGBIT(0, EV_MAX), EV_MAX, &out) == 8);
	CHECK(bit(out, EV_SYN));
	CHECK(bit(out, EV_KEY));
	CHECK(bit(out, EV_MSC));
	CHECK(bit(out, EV_LED));
	CHECK(bit(out, EV_REP));
	CHECK_FALSE(bit(out, EV_ABS));
	/* evtest asks for KEY_MAX bytes: it gets the 96 of the bitmap. */
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_KEY, KEY_MAX), KEY_MAX, &out) == 96);
	CHECK(bit(out, KEY_A));
	CHECK(bit(out, KEY_ESC));
	CHECK(bit(out, KEY_RIGHTMETA));
	CHECK_FALSE(bit(out, KEY_RESERVED));
	CHECK_FALSE(bit(out, BTN_LEFT));
	CHECK(out[96] == std::byte{ 0xaa });
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_KEY, 4), 4, &out) == 4);
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_MSC, 8), 8, &out) == 8);
	CHECK(bit(out, MSC_SCAN));
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_ABS, 8), 8, &out) == 8);
	CHECK_FALSE(bit(out, ABS_X));
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_FF, 64), 64, &out) == 16);
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_REP, 8), 8) == -EINVAL);
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_MAX, 8), 8) == -EINVAL);
	CHECK(in.ioctl(fh, EVIOCGPROP(8), 8, &out) == 8);
	CHECK(in.ioctlValue(fh, EVIOCGBIT(EV_KEY, 96), kBad) == -EFAULT);
}

TEST_CASE("evdev: ioctls the driver does not know get EINVAL, as evdev answers them")
{
	Input in;
	uint32_t fh = in.open();
	CHECK(in.ioctl(fh, TCGETS, sizeof(termios)) == -EINVAL);
	CHECK(in.ioctl(fh, _IOR('E', 0x05, int), 4) == -EINVAL);
	CHECK(in.ioctl(fh, _IOW('E', 0x20, int), 4) == -EINVAL); /* EVIOCGBIT's number with the wrong direction */
	CHECK(in.ioctl(fh, EVIOCGMTSLOTS(8), 8) == -EINVAL);
	CHECK(in.ioctlValue(fh, EVIOCGMTSLOTS(8), kBad) == -EFAULT);
	CHECK(in.ioctl(fh, EVIOCGEFFECTS, 4) == 0);
	CHECK(in.ioctlValue(fh, EVIOCRMFF, 0) == -ENOSYS);
	/* the fixed commands match their exact size only */
	CHECK(in.ioctl(fh, _IOR('E', 0x01, int64_t), 8) == -EINVAL);
}

TEST_CASE("evdev: a tap reads back as MSC_SCAN, EV_KEY and SYN_REPORT for press and release")
{
	Input in;
	uint32_t fh = in.open();
	CHECK(in.events(fh).empty());
	in.inject({ "tap", "KEY_A" });
	std::vector<input_event> raw;
	CHECK(in.events(fh, &raw) == tap(KEY_A, 0x1e));
	timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	CHECK(std::abs(raw[0].input_event_sec - now.tv_sec) <= 2);
	CHECK(raw[0].input_event_usec < 1000000);

	in.inject({ "tap", "KEY_RIGHTCTRL", "KEY_1" });
	auto evs = in.events(fh);
	REQUIRE(evs.size() == 12);
	CHECK(evs[0] == Ev{ EV_MSC, MSC_SCAN, 0x9d }); /* e0 1d */
	CHECK(evs[7] == Ev{ EV_KEY, KEY_1, 1 });
	in.inject({ "tap", "BTN_LEFT" }, -EINVAL);
	in.inject({ "tap", "KEY_NOPE" }, -EINVAL);
}

TEST_CASE("evdev: only complete packets are readable; an empty report is not delivered")
{
	Input in({ { "scan", "false" } });
	uint32_t fh = in.open();
	in.inject({ "key", "KEY_B", "1" });
	CHECK(in.events(fh).empty());
	CHECK((in.h.poll(fh) & POLLIN) == 0);
	in.inject({ "syn" });
	CHECK((in.h.poll(fh) & POLLIN) != 0);
	CHECK((in.h.poll(fh) & POLLOUT) != 0);
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_KEY, KEY_B, 1 }, kSyn });
	/* Pressing a key that is down changes nothing: nothing to report. */
	in.inject({ "key", "KEY_B", "1" });
	in.inject({ "syn" });
	CHECK(in.events(fh).empty());
	in.inject({ "key", "KEY_B", "0" });
	in.inject({ "syn" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_KEY, KEY_B, 0 }, kSyn });
}

TEST_CASE("evdev: a read smaller than one event is EINVAL; larger reads return whole events")
{
	Input in;
	uint32_t fh = in.open();
	in.inject({ "tap", "KEY_A" });
	auto r = in.h.read(fh, 23, true);
	REQUIRE(r->done);
	CHECK(r->result == -EINVAL);
	r = in.h.read(fh, 30, true);
	REQUIRE(r->done);
	CHECK(r->result == 24);
	r = in.h.read(fh, 0, true);
	REQUIRE(r->done);
	CHECK(r->result == 0);
	CHECK(in.events(fh).size() == 5);
}

TEST_CASE("evdev: a blocking read waits for a packet; O_NONBLOCK gets EAGAIN")
{
	Input in;
	uint32_t fh = in.open();
	auto nb = in.h.read(fh, 24, true);
	REQUIRE(nb->done);
	CHECK(nb->result == -EAGAIN);
	auto r = in.h.read(fh, 24 * 10);
	CHECK_FALSE(r->done);
	in.inject({ "key", "KEY_C", "1" });
	CHECK_FALSE(r->done); /* no SYN_REPORT yet */
	in.inject({ "syn" });
	REQUIRE(r->done);
	CHECK(r->result == 3 * 24);
}

TEST_CASE("evdev: every open file has its own queue and sees every event from its open on")
{
	Input in;
	uint32_t a = in.open(), b = in.open();
	in.inject({ "tap", "KEY_A" });
	uint32_t late = in.open();
	CHECK(in.events(a) == tap(KEY_A, 0x1e));
	in.inject({ "tap", "KEY_Z" });
	CHECK(in.events(a) == tap(KEY_Z, 0x2c));
	auto both = tap(KEY_A, 0x1e);
	auto z = tap(KEY_Z, 0x2c);
	both.insert(both.end(), z.begin(), z.end());
	CHECK(in.events(b) == both);
	CHECK(in.events(late) == z);
	in.h.release(b);
	in.inject({ "tap", "KEY_A" });
	CHECK(in.events(a).size() == 6);
}

TEST_CASE("evdev: EVIOCGRAB gives one file every event; others wait; release or ungrab ends it")
{
	Input in;
	uint32_t a = in.open(), b = in.open();
	CHECK(in.ioctlValue(a, EVIOCGRAB, 1) == 0);
	CHECK(in.ioctlValue(b, EVIOCGRAB, 1) == -EBUSY);
	CHECK(in.ioctlValue(a, EVIOCGRAB, 1) == -EBUSY);
	CHECK(in.ioctlValue(b, EVIOCGRAB, 0) == -EINVAL);
	in.inject({ "tap", "KEY_A" });
	CHECK(in.events(a).size() == 6);
	CHECK(in.events(b).empty());
	CHECK(in.ioctlValue(a, EVIOCGRAB, 0) == 0);
	in.inject({ "tap", "KEY_A" });
	CHECK(in.events(a).size() == 6);
	CHECK(in.events(b).size() == 6);
	CHECK(in.ioctlValue(b, EVIOCGRAB, 1) == 0);
	in.h.release(b);
	in.inject({ "tap", "KEY_A" });
	CHECK(in.events(a).size() == 6);
	CHECK(in.inject({ "state" }).find("grabbed no") != std::string::npos);
}

TEST_CASE("evdev: EVIOCREVOKE ends a file: ENODEV for reads, writes and ioctls, POLLHUP, a blocked reader woken")
{
	Input in;
	uint32_t a = in.open(), b = in.open();
	auto parked = in.h.read(a, 240);
	CHECK_FALSE(parked->done);
	CHECK(in.ioctlValue(b, EVIOCREVOKE, 1) == -EINVAL);
	CHECK(in.ioctlValue(a, EVIOCGRAB, 1) == 0);
	/* The revoke comes through another request of the same file: the harness keeps the read parked meanwhile. */
	CHECK(in.ioctlValue(a, EVIOCREVOKE, 0) == 0);
	REQUIRE(parked->done);
	CHECK(parked->result == -ENODEV);
	CHECK(in.h.poll(a) == (POLLHUP | POLLERR));
	CHECK(in.h.read(a, 24, true)->result == -ENODEV);
	input_event e{};
	CHECK(in.h.write(a, std::as_bytes(std::span(&e, 1)))->result == -ENODEV);
	CHECK(in.ioctl(a, EVIOCGVERSION, 4) == -ENODEV);
	/* The revoked file's grab is gone. */
	in.inject({ "tap", "KEY_A" });
	CHECK(in.events(b).size() == 6);
}

TEST_CASE("evdev: a full queue drops everything but the newest event behind SYN_DROPPED")
{
	Input in({ { "queue", "8" }, { "scan", "off" } });
	uint32_t fh = in.open();
	in.inject({ "tap", "KEY_A", "KEY_B" }); /* 8 events: the 8th overflows */
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_SYN, SYN_DROPPED, 0 }, kSyn });
	in.inject({ "tap", "KEY_C" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_KEY, KEY_C, 1 }, kSyn, { EV_KEY, KEY_C, 0 }, kSyn });
	CHECK(in.h.core_->model()->dropped() == 7);
	/* An overflow inside a packet keeps the newest event; the packet's end makes it readable. */
	in.inject({ "tap", "KEY_A" });
	for (const char *key : { "KEY_B", "KEY_C", "KEY_D", "KEY_E" })
		in.inject({ "key", key, "1" });
	in.inject({ "syn" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_SYN, SYN_DROPPED, 0 }, { EV_KEY, KEY_E, 1 }, kSyn });
}

TEST_CASE("evdev: EVIOCGKEY shows held keys and drops that file's queued key events")
{
	Input in({ { "scan", "off" } });
	uint32_t a = in.open(), b = in.open();
	in.inject({ "key", "KEY_LEFTSHIFT", "1" });
	in.inject({ "syn" });
	in.inject({ "key", "KEY_Q", "1" });
	in.inject({ "event", "EV_LED", "LED_CAPSL", "1" });
	in.inject({ "syn" });
	std::vector<std::byte> out;
	CHECK(in.ioctl(a, EVIOCGKEY(KEY_MAX), KEY_MAX, &out) == 96);
	CHECK(bit(out, KEY_LEFTSHIFT));
	CHECK(bit(out, KEY_Q));
	CHECK_FALSE(bit(out, KEY_A));
	/* a: the key events went, the LED report stayed; b: untouched. */
	CHECK(in.events(a) == std::vector<Ev>{ kSyn, { EV_LED, LED_CAPSL, 1 }, kSyn });
	CHECK(in.events(b).size() == 5);
	CHECK(in.ioctl(a, EVIOCGLED(8), 8, &out) == 8);
	CHECK(bit(out, LED_CAPSL));
	CHECK(in.ioctl(a, EVIOCGSW(8), 8, &out) == 8);
	CHECK(in.ioctl(a, EVIOCGSND(8), 8, &out) == 8);
	CHECK(in.ioctl(a, EVIOCGKEY(2), 2, &out) == 2);
}

TEST_CASE("evdev: written events go through the device to every reader; partial events are EINVAL")
{
	Input in;
	uint32_t a = in.open(), b = in.open();
	std::array<input_event, 2> led{};
	led[0].type = EV_LED;
	led[0].code = LED_NUML;
	led[0].value = 1;
	led[1].type = EV_SYN;
	led[1].code = SYN_REPORT;
	auto bytes = std::as_bytes(std::span(led));
	CHECK(in.h.write(a, bytes)->result == 48);
	CHECK(in.events(a) == std::vector<Ev>{ { EV_LED, LED_NUML, 1 }, kSyn });
	CHECK(in.events(b) == std::vector<Ev>{ { EV_LED, LED_NUML, 1 }, kSyn });
	CHECK(in.inject({ "state" }).find("leds on: LED_NUML") != std::string::npos);
	CHECK(in.h.write(a, bytes.first(10))->result == -EINVAL);
	/* a trailing partial event is not written */
	std::vector<std::byte> more(bytes.begin(), bytes.end());
	more.resize(60);
	CHECK(in.h.write(a, more)->result == 48);
	/* events the device does not have are dropped silently */
	led[0] = { {}, EV_ABS, ABS_X, 5 };
	CHECK(in.h.write(a, std::as_bytes(std::span(led)))->result == 48);
	CHECK(in.events(b).empty());
}

TEST_CASE("evdev: a tablet reports its axes; EVIOCGABS/EVIOCSABS; keyboards have no absinfo")
{
	Input in({ { "type", "tablet" }, { "abs_x", "0:4095" }, { "abs_y", "-100:100" } });
	uint32_t fh = in.open();
	std::vector<std::byte> out;
	CHECK(in.ioctl(fh, EVIOCGBIT(0, 8), 8, &out) == 8);
	CHECK(bit(out, EV_ABS));
	CHECK_FALSE(bit(out, EV_REP));
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_ABS, 8), 8, &out) == 8);
	CHECK(bit(out, ABS_X));
	CHECK(bit(out, ABS_PRESSURE));
	CHECK(in.ioctl(fh, EVIOCGPROP(4), 4, &out) == 4);
	CHECK(bit(out, INPUT_PROP_POINTER));
	auto x = in.ioctlOut<input_absinfo>(fh, EVIOCGABS(ABS_X));
	CHECK(x.minimum == 0);
	CHECK(x.maximum == 4095);
	CHECK(x.resolution == 100);
	auto y = in.ioctlOut<input_absinfo>(fh, EVIOCGABS(ABS_Y));
	CHECK(y.minimum == -100);
	in.inject({ "abs", "ABS_X", "100" });
	in.inject({ "abs", "ABS_Y", "-7" });
	in.inject({ "key", "BTN_TOUCH", "1" });
	in.inject({ "syn" });
	CHECK(in.events(fh) ==
	      std::vector<Ev>{ { EV_ABS, ABS_X, 100 }, { EV_ABS, ABS_Y, -7 }, { EV_KEY, BTN_TOUCH, 1 }, kSyn });
	CHECK(in.ioctlOut<input_absinfo>(fh, EVIOCGABS(ABS_X)).value == 100);
	/* the same value again is no news */
	in.inject({ "abs", "ABS_X", "100" });
	in.inject({ "syn" });
	CHECK(in.events(fh).empty());
	/* an axis the device lacks still has (zero) absinfo, like the kernel's array */
	CHECK(in.ioctlOut<input_absinfo>(fh, EVIOCGABS(ABS_Z)).maximum == 0);
	/* a short EVIOCGABS gets what fits */
	CHECK(in.ioctl(fh, _IOR('E', 0x40 + ABS_X, int32_t[3]), 12, &out) == 0);
	input_absinfo set{ 5, 10, 20, 0, 0, 3 };
	CHECK(in.ioctlIn(fh, EVIOCSABS(ABS_X), set) == 0);
	CHECK(in.ioctlOut<input_absinfo>(fh, EVIOCGABS(ABS_X)).maximum == 20);
	CHECK(in.ioctlIn(fh, EVIOCSABS(ABS_MT_SLOT), set) == -EINVAL);
	CHECK(in.ioctlValue(fh, EVIOCSABS(ABS_X), kBad) == -EFAULT);
	in.inject({ "abs", "ABS_RX", "1" }, -EINVAL);
	in.inject({ "key", "KEY_A", "1" }, -EINVAL);

	Input kbd;
	fh = kbd.open();
	CHECK(kbd.ioctl(fh, EVIOCGABS(ABS_X), sizeof(input_absinfo)) == -EINVAL);
	CHECK(kbd.ioctlIn(fh, EVIOCSABS(ABS_X), set) == -EINVAL);
}

TEST_CASE("evdev: a joystick's fuzz filters small moves like the input core")
{
	Input in({ { "type", "joystick" } });
	uint32_t fh = in.open();
	auto x = in.ioctlOut<input_absinfo>(fh, EVIOCGABS(ABS_X));
	CHECK(x.minimum == -32768);
	CHECK(x.fuzz == 16);
	in.inject({ "abs", "ABS_X", "5" });
	in.inject({ "syn" });
	CHECK(in.events(fh).empty());
	in.inject({ "abs", "ABS_X", "20" }); /* within 2 * fuzz: averaged */
	in.inject({ "syn" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_ABS, ABS_X, 10 }, kSyn });
	in.inject({ "abs", "ABS_X", "1000" });
	in.inject({ "tap", "BTN_TRIGGER" });
	CHECK(in.events(fh) ==
	      std::vector<Ev>{
		      { EV_ABS, ABS_X, 1000 }, { EV_KEY, BTN_TRIGGER, 1 }, kSyn, { EV_KEY, BTN_TRIGGER, 0 }, kSyn });
	CHECK(in.ioctl(fh, EVIOCGREP, 8) == -ENOSYS);
}

TEST_CASE("evdev: a held key autorepeats after the delay at the period; EVIOCGREP/EVIOCSREP")
{
	Input in({ { "repeat", "50/20" }, { "scan", "off" } });
	uint32_t fh = in.open();
	auto rep = in.ioctlOut<std::array<uint32_t, 2>>(fh, EVIOCGREP);
	CHECK(rep[0] == 50);
	CHECK(rep[1] == 20);
	in.inject({ "key", "KEY_X", "1" });
	in.inject({ "syn" });
	in.h.io_.restart();
	in.h.io_.run_for(std::chrono::milliseconds(115));
	auto evs = in.events(fh);
	REQUIRE(evs.size() >= 4);
	CHECK(evs[2] == Ev{ EV_KEY, KEY_X, 2 });
	size_t repeats = std::count(evs.begin(), evs.end(), Ev{ EV_KEY, KEY_X, 2 });
	CHECK(repeats >= 2);
	CHECK(repeats <= 4);
	in.inject({ "key", "KEY_X", "0" });
	in.inject({ "syn" });
	in.h.io_.restart();
	in.h.io_.run_for(std::chrono::milliseconds(60));
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_KEY, KEY_X, 0 }, kSyn });

	/* EVIOCSREP injects EV_REP events: readers see them with the next report. */
	CHECK(in.ioctlIn(fh, EVIOCSREP, std::array<uint32_t, 2>{ 400, 40 }) == 0);
	CHECK(in.ioctlOut<std::array<uint32_t, 2>>(fh, EVIOCGREP)[0] == 400);
	in.inject({ "syn" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_REP, REP_DELAY, 400 }, { EV_REP, REP_PERIOD, 40 }, kSyn });

	Input off({ { "repeat", "off" } });
	fh = off.open();
	CHECK(off.ioctl(fh, EVIOCGREP, 8) == -ENOSYS);
}

TEST_CASE("evdev: EVIOCSCLOCKID picks the timestamps' clock; a change flushes the queue with SYN_DROPPED")
{
	Input in;
	uint32_t fh = in.open();
	CHECK(in.ioctlIn(fh, EVIOCSCLOCKID, int{ CLOCK_PROCESS_CPUTIME_ID }) == -EINVAL);
	CHECK(in.ioctlValue(fh, EVIOCSCLOCKID, kBad) == -EFAULT);
	in.inject({ "tap", "KEY_A" });
	CHECK(in.ioctlIn(fh, EVIOCSCLOCKID, int{ CLOCK_MONOTONIC }) == 0);
	CHECK(in.events(fh).empty()); /* SYN_DROPPED waits for the next report */
	in.inject({ "tap", "KEY_A" });
	std::vector<input_event> raw;
	auto evs = in.events(fh, &raw);
	REQUIRE(evs.size() == 7);
	CHECK(evs[0] == Ev{ EV_SYN, SYN_DROPPED, 0 });
	timespec mono;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	CHECK(std::abs(raw[1].input_event_sec - mono.tv_sec) <= 2);
	/* setting the same clock again flushes nothing */
	in.inject({ "tap", "KEY_A" });
	CHECK(in.ioctlIn(fh, EVIOCSCLOCKID, int{ CLOCK_MONOTONIC }) == 0);
	CHECK(in.events(fh).size() == 6);
}

TEST_CASE("evdev: the keymap: EVIOCGKEYCODE reads it, EVIOCSKEYCODE remaps a scancode and the key bits follow")
{
	Input in;
	uint32_t fh = in.open();
	std::vector<std::byte> out;
	std::array<uint32_t, 2> pair{ 0x1e, 0 };
	auto pb = std::as_bytes(std::span(pair));
	CHECK(in.ioctl(fh, EVIOCGKEYCODE, 8, &out, { pb.begin(), pb.end() }) == 0);
	std::memcpy(pair.data(), out.data(), 8);
	CHECK(pair[1] == KEY_A);
	pair = { 0x9c8, 0 };
	pb = std::as_bytes(std::span(pair));
	CHECK(in.ioctl(fh, EVIOCGKEYCODE, 8, &out, { pb.begin(), pb.end() }) == -EINVAL);

	input_keymap_entry ke{};
	ke.flags = INPUT_KEYMAP_BY_INDEX;
	ke.index = 0xc8;
	auto keb = std::as_bytes(std::span(&ke, 1));
	CHECK(in.ioctl(fh, EVIOCGKEYCODE_V2, sizeof(ke), &out, { keb.begin(), keb.end() }) == 0);
	std::memcpy(&ke, out.data(), sizeof(ke));
	CHECK(ke.keycode == KEY_UP);
	CHECK(ke.len == 4);

	CHECK(in.ioctlIn(fh, EVIOCSKEYCODE, std::array<uint32_t, 2>{ 0x1e, KEY_B }) == 0);
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_KEY, 96), 96, &out) == 96);
	CHECK_FALSE(bit(out, KEY_A));
	CHECK(bit(out, KEY_B));
	in.inject({ "scan", "0x1e", "1" });
	in.inject({ "syn" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_MSC, MSC_SCAN, 0x1e }, { EV_KEY, KEY_B, 1 }, kSyn });
	in.inject({ "scan", "0x1e", "0" });
	in.inject({ "syn" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_MSC, MSC_SCAN, 0x1e }, { EV_KEY, KEY_B, 0 }, kSyn });
	in.inject({ "tap", "KEY_A" }, -EINVAL);
	CHECK(in.ioctlIn(fh, EVIOCSKEYCODE, std::array<uint32_t, 2>{ 0x1e, KEY_MAX + 1 }) == -EINVAL);
	CHECK(in.ioctlIn(fh, EVIOCSKEYCODE, std::array<uint32_t, 2>{ 0x1000, KEY_A }) == -EINVAL);
	/* a held key that leaves the keymap is released */
	CHECK(in.ioctlIn(fh, EVIOCSKEYCODE, std::array<uint32_t, 2>{ 0x1e, KEY_F13 }) == 0);
	in.inject({ "scan", "0x1e", "1" });
	in.inject({ "syn" });
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_MSC, MSC_SCAN, 0x1e }, { EV_KEY, KEY_F13, 1 }, kSyn });
	CHECK(in.ioctlIn(fh, EVIOCSKEYCODE, std::array<uint32_t, 2>{ 0x1e, KEY_A }) == 0);
	CHECK(in.events(fh) == std::vector<Ev>{ { EV_KEY, KEY_F13, 0 }, kSyn });
	CHECK(in.ioctl(fh, EVIOCGBIT(EV_KEY, 96), 96, &out) == 96);
	CHECK(bit(out, KEY_A));
	CHECK_FALSE(bit(out, KEY_F13));

	Input tablet({ { "type", "tablet" } });
	fh = tablet.open();
	CHECK(tablet.ioctlIn(fh, EVIOCSKEYCODE, std::array<uint32_t, 2>{ 1, KEY_A }) == -EINVAL);
}

TEST_CASE("evdev: EVIOCSMASK filters a file's events by type and code; EVIOCGMASK reads it back")
{
	Input in;
	uint32_t a = in.open(), b = in.open();
	/* Mask out EV_MSC on a: an all-zero code mask. */
	in.mem.regions[kCodes].assign(8, std::byte{ 0 });
	input_mask m{ EV_MSC, 8, kCodes };
	CHECK(in.ioctlIn(a, EVIOCSMASK, m) == 0);
	in.inject({ "tap", "KEY_A" });
	CHECK(in.events(a) == std::vector<Ev>{ { EV_KEY, KEY_A, 1 }, kSyn, { EV_KEY, KEY_A, 0 }, kSyn });
	CHECK(in.events(b).size() == 6);
	/* EVIOCGMASK: the set mask, and all ones for a type never set; the rest of the buffer cleared. */
	in.mem.regions[kCodes].assign(16, std::byte{ 0x55 });
	m = { EV_MSC, 16, kCodes };
	CHECK(in.ioctlIn(a, EVIOCGMASK, m) == 0);
	CHECK(in.mem.regions[kCodes][0] == std::byte{ 0 });
	CHECK(in.mem.regions[kCodes][12] == std::byte{ 0 });
	in.mem.regions[kCodes].assign(8, std::byte{ 0 });
	m = { EV_KEY, 8, kCodes };
	CHECK(in.ioctlIn(a, EVIOCGMASK, m) == 0);
	CHECK(in.mem.regions[kCodes][7] == std::byte{ 0xff });
	/* unknown types are accepted; a bad codes pointer faults */
	m = { 0x1f, 8, kCodes };
	CHECK(in.ioctlIn(a, EVIOCSMASK, m) == 0);
	m = { EV_KEY, 8, kBad };
	CHECK(in.ioctlIn(a, EVIOCSMASK, m) == -EFAULT);
}

TEST_CASE("evdev: type TEXT taps keys with shift for capitals")
{
	Input in({ { "scan", "off" } });
	uint32_t fh = in.open();
	in.inject({ "type", "Hi", "!" });
	auto evs = in.events(fh);
	std::vector<Ev> presses;
	for (auto e : evs)
		if (e.type == EV_KEY && e.value == 1)
			presses.push_back(e);
	CHECK(presses == std::vector<Ev>{ { EV_KEY, KEY_LEFTSHIFT, 1 },
					  { EV_KEY, KEY_H, 1 },
					  { EV_KEY, KEY_I, 1 },
					  { EV_KEY, KEY_SPACE, 1 },
					  { EV_KEY, KEY_LEFTSHIFT, 1 },
					  { EV_KEY, KEY_1, 1 } });
	in.inject({ "type", "\x01" }, -EINVAL);
}

TEST_CASE("evdev: a restricted (FUSE) driver gets size-encoded answers padded to the encoded size")
{
	Input in;
	uint32_t fh = in.open();
	auto o = in.h.restrictedIoctl(fh, EVIOCGNAME(64), {}, 64);
	REQUIRE(o->done);
	CHECK(o->result == 16);
	CHECK(o->aux == 64);
	CHECK(std::string(reinterpret_cast<const char *>(o->data.data())) == "devemu keyboard");
	auto bits = in.h.restrictedIoctl(fh, EVIOCGBIT(EV_KEY, 96), {}, 96);
	REQUIRE(bits->done);
	CHECK(bits->result == 96);
	/* EVIOCGRAB takes a value, not a pointer: FUSE cannot forward that (the kernel faults first). */
}

TEST_CASE("evdev: options are checked")
{
	auto factory = ModelRegistry::builtin().find("evdev")->factory;
	auto fails = [&](ModelOptions::Pairs pairs, std::string_view key) {
		ModelOptions opts("t", "evdev", std::move(pairs));
		test::Harness probe("loopback");
		factory(opts, *probe.core_);
		CHECK_MESSAGE(opts.error().find(key) != std::string::npos, opts.error());
	};
	fails({ { "type", "mouse" } }, "type");
	fails({ { "abs_x", "0:100" } }, "abs_x");
	fails({ { "type", "tablet" }, { "abs_x", "100:0" } }, "abs_x");
	fails({ { "type", "joystick" }, { "repeat", "off" } }, "repeat");
	fails({ { "repeat", "fast" } }, "repeat");
	fails({ { "queue", "100" } }, "queue");
	fails({ { "vendor", "0x10000" } }, "vendor");
	Input in({ { "type", "joystick" }, { "abs_y", "-10:10" }, { "vendor", "0x1234" } });
	uint32_t fh = in.open();
	CHECK(in.ioctlOut<input_id>(fh, EVIOCGID).vendor == 0x1234);
	CHECK(in.ioctlOut<input_absinfo>(fh, EVIOCGABS(ABS_Y)).maximum == 10);
	in.inject({ "bogus" }, -EINVAL);
	in.inject({ "scan", "1", "1" }, -EINVAL);
}

TEST_CASE("evdev: a 32-bit caller writes and reads 16-byte events; readable bytes and EVIOCSFF in its sizes")
{
	struct Event32 {
		int32_t sec, usec;
		uint16_t type, code;
		int32_t value;
	};
	static_assert(sizeof(Event32) == 16);
	Input in;
	uint32_t native = in.open();
	in.h.setCompat(true);
	uint32_t fh = in.open();
	std::array<Event32, 2> key{ Event32{ 0, 0, EV_KEY, KEY_A, 1 }, Event32{ 0, 0, EV_SYN, SYN_REPORT, 0 } };
	CHECK(in.h.write(fh, std::as_bytes(std::span(key)))->result == 32);
	CHECK(in.h.window_.fileShadow(fh).readable == 32); /* what the kernel shim answers FIONREAD with */

	auto r = in.h.read(fh, 15, true);
	CHECK(r->result == -EINVAL); /* less than one 16-byte event */
	r = in.h.read(fh, 64, true);
	REQUIRE(r->result == 32);
	std::array<Event32, 2> got;
	std::memcpy(got.data(), r->data.data(), sizeof(got));
	CHECK(Ev{ got[0].type, got[0].code, got[0].value } == Ev{ EV_KEY, KEY_A, 1 });
	CHECK(Ev{ got[1].type, got[1].code, got[1].value } == kSyn);
	CHECK(got[0].sec > 1'600'000'000);
	CHECK(got[0].usec >= 0);
	CHECK(got[0].usec < 1'000'000);

	/* EVIOCSFF: the 44-byte ff_effect reaches the device (no force feedback); 48 bytes cannot be copied. */
	CHECK(in.ioctl(fh, _IOC(_IOC_WRITE, 'E', 0x80, 44), 44) == -ENOSYS);
	CHECK(in.ioctl(fh, _IOC(_IOC_WRITE, 'E', 0x80, 48), 48) == -EFAULT);

	/* A 64-bit reader of the same device gets the same events in 24-byte form. */
	in.h.setCompat(false);
	CHECK(in.events(native) == std::vector<Ev>{ { EV_KEY, KEY_A, 1 }, kSyn });
	CHECK(in.ioctl(native, EVIOCSFF, 48) == -ENOSYS);
}

namespace {

/*
 * evdev behind a window with per-file receive FIFOs, whose driver side (the kernel shim's) the test plays:
 * take() reads a file's FIFO as the module does; requests (ioctls, compat and diverted reads) go through the
 * window's driver as the module sends them, holding the file's FIFO.
 */
struct ShimInput : Input {
	explicit ShimInput(std::initializer_list<std::pair<std::string, std::string>> options = {}) : Input(options)
	{
		fifoWindow.emplace(
			*h.core_, "fifo",
			WindowGeometry{ DEVEMU_DEFAULT_QUEUE_DEPTH, DEVEMU_DEFAULT_SLOT_SIZE, 0, 0, 4, 4096 },
			DEVEMU_F_FILE_STREAM);
		REQUIRE((window().regs().features_accepted & DEVEMU_F_FILE_STREAM) != 0);
		h.driver_ = &fifoWindow->driver();
	}
	Window &window() { return fifoWindow->window(); }
	devemu_fifo &fifo(uint32_t fh) { return window().fileFifo(fh); }
	/* The driver side: the head with the core's discard applied, as the module acts on it. */
	uint32_t head(uint32_t fh)
	{
		uint32_t head = fifo(fh).head, discard = fifo(fh).discard, tail = loadAcquire(fifo(fh).tail);
		if (discard - head <= tail - head)
			head = discard;
		return head;
	}
	/* Whole events a read() of the file gets from its FIFO now (the head moves past them). */
	std::vector<Ev> take(uint32_t fh, std::vector<input_event> *raw = nullptr)
	{
		auto data = window().fileFifoData(fh);
		uint32_t at = head(fh), tail = loadAcquire(fifo(fh).tail);
		REQUIRE((tail - at) % sizeof(input_event) == 0);
		std::vector<Ev> out;
		for (; at != tail; at += sizeof(input_event)) {
			input_event e;
			for (size_t i = 0; i < sizeof(e); i++)
				reinterpret_cast<std::byte *>(&e)[i] = data[(at + i) & (data.size() - 1)];
			out.push_back({ e.type, e.code, e.value });
			if (raw)
				raw->push_back(e);
		}
		storeRelease(fifo(fh).head, at);
		h.core_->doorbell();
		return out;
	}
	std::optional<LocalWindow> fifoWindow;
};

} // namespace

TEST_CASE(
	"evdev on per-file FIFOs: each file's complete packets go to its own FIFO as 24-byte records, across the wrap")
{
	ShimInput in({ { "scan", "off" } });
	uint32_t a = in.open(), b = in.open();
	CHECK(in.window().fileFifoCount() == 4);
	CHECK(in.fifo(a).record == 24);
	in.inject({ "tap", "KEY_A" });
	in.inject({ "key", "KEY_B", "1" }); /* a packet not yet complete stays in the model */
	std::vector<input_event> raw;
	CHECK(in.take(a, &raw) == std::vector<Ev>{ { EV_KEY, KEY_A, 1 }, kSyn, { EV_KEY, KEY_A, 0 }, kSyn });
	CHECK(raw[0].input_event_sec > 1'600'000'000);
	CHECK(in.take(a).empty());
	in.inject({ "syn" });
	CHECK(in.take(a) == std::vector<Ev>{ { EV_KEY, KEY_B, 1 }, kSyn });
	/* b has its own FIFO and queue: everything since its open, untouched by a's reads. */
	CHECK(in.take(b).size() == 6);
	/* The kernel shim answers poll and FIONREAD for these reads from the fill: the shadow leaves them out. */
	in.inject({ "tap", "KEY_C" });
	CHECK((seqlockRead(in.window().fileShadow(a)).revents & POLLIN) == 0);
	CHECK(seqlockRead(in.window().fileShadow(a)).readable == 0);
	CHECK(loadAcquire(in.fifo(a).tail) - in.fifo(a).head == 4 * 24);
	in.take(a);
	/* 4096 is no multiple of 24: records straddle the ring's end and come out whole. */
	for (int round = 0; round < 60; round++) {
		in.inject({ "tap", "KEY_D" });
		REQUIRE(in.take(a) == std::vector<Ev>{ { EV_KEY, KEY_D, 1 }, kSyn, { EV_KEY, KEY_D, 0 }, kSyn });
	}
	CHECK(in.fifo(a).head > 4096);
	/* Bytes the driver read count as read. */
	CHECK(in.h.core_->stats().bytesOut >= 61 * 4 * 24);
}

TEST_CASE("evdev on per-file FIFOs: a request of the file takes its FIFO back first, so ioctls and compat reads see "
	  "the whole queue")
{
	ShimInput in({ { "scan", "off" } });
	uint32_t a = in.open();
	in.inject({ "key", "KEY_LEFTSHIFT", "1" });
	in.inject({ "syn" });
	in.inject({ "key", "KEY_Q", "1" });
	in.inject({ "event", "EV_LED", "LED_CAPSL", "1" });
	in.inject({ "syn" });
	CHECK(loadAcquire(in.fifo(a).tail) - in.fifo(a).head == 5 * 24);
	/* EVIOCGKEY drops the file's queued key events: those in the FIFO too (handed back with discard). */
	std::vector<std::byte> out;
	CHECK(in.ioctl(a, EVIOCGKEY(KEY_MAX), KEY_MAX, &out) == 96);
	CHECK(bit(out, KEY_Q));
	CHECK(in.fifo(a).discard == in.fifo(a).tail - 3 * 24); /* taken back, then the rest produced again */
	CHECK(in.take(a) == std::vector<Ev>{ kSyn, { EV_LED, LED_CAPSL, 1 }, kSyn });
	/* A 32-bit reader's read comes by request: the events in the FIFO reach it in 16-byte form. */
	in.inject({ "tap", "KEY_A" });
	CHECK(loadAcquire(in.fifo(a).tail) - in.head(a) == 4 * 24);
	in.h.setCompat(true);
	auto r = in.h.read(a, 64, true);
	CHECK(r->result == 64);
	in.h.setCompat(false);
	CHECK(in.take(a).empty());
	/* A request that finds nothing in either place parks, and the next packet ends it by request. */
	auto parked = in.h.read(a, 240);
	CHECK_FALSE(parked->done);
	in.inject({ "tap", "KEY_B" });
	REQUIRE(parked->done);
	CHECK(parked->result == 4 * 24);
	CHECK(in.take(a).empty());
}

TEST_CASE("evdev on per-file FIFOs: a full queue counts the FIFO's events and drops them behind SYN_DROPPED")
{
	ShimInput in({ { "queue", "8" }, { "scan", "off" } });
	uint32_t a = in.open();
	in.inject({ "tap", "KEY_A" }); /* 4 events, in the FIFO */
	in.inject({ "tap", "KEY_B" }); /* the 8th event of queue + FIFO overflows */
	CHECK(in.take(a) == std::vector<Ev>{ { EV_SYN, SYN_DROPPED, 0 }, kSyn });
	CHECK(in.h.core_->model()->dropped() == 7);
	in.inject({ "tap", "KEY_C" });
	CHECK(in.take(a) == std::vector<Ev>{ { EV_KEY, KEY_C, 1 }, kSyn, { EV_KEY, KEY_C, 0 }, kSyn });
}

TEST_CASE("evdev on per-file FIFOs: a revoked file is diverted to requests; a reused fh starts empty; files past the "
	  "count read by request")
{
	ShimInput in({ { "scan", "off" } });
	uint32_t a = in.open(), b = in.open();
	in.inject({ "tap", "KEY_A" });
	CHECK(in.fifo(a).divert == 0);
	CHECK(in.ioctlValue(a, EVIOCREVOKE, 0) == 0);
	CHECK(in.fifo(a).divert == 1);
	CHECK(in.h.read(a, 24, true)->result == -ENODEV);
	CHECK((seqlockRead(in.window().fileShadow(a)).revents & POLLHUP) != 0);
	/* b's events wait in its FIFO when it closes; the next file on its fh does not see them. */
	in.h.release(b);
	uint32_t c = in.open();
	CHECK(c == b);
	CHECK(in.fifo(c).divert == 0);
	CHECK(in.take(c).empty());
	in.inject({ "tap", "KEY_B" });
	CHECK(in.take(c).size() == 4);
	/* fh 2 and 3 have FIFOs, fh 4 does not: its events wait in the model for a read request. */
	in.open();
	in.open();
	uint32_t e = in.open();
	CHECK(e == 4);
	in.inject({ "tap", "KEY_C" });
	CHECK((seqlockRead(in.window().fileShadow(e)).revents & POLLIN) != 0);
	CHECK(in.events(e).size() == 4);
}

TEST_CASE("evdev on per-file FIFOs: hostile driver indices move nothing outside the FIFO, and its counts only numbers")
{
	ShimInput in({ { "scan", "off" } });
	uint32_t a = in.open();
	in.inject({ "tap", "KEY_A" });
	uint32_t tail = loadAcquire(in.fifo(a).tail);
	/* A head past the tail: the core stops filling that FIFO rather than trust it. */
	storeRelease(in.fifo(a).head, tail + 100000);
	in.inject({ "tap", "KEY_B" });
	CHECK(loadAcquire(in.fifo(a).tail) == tail);
	/* Back in range: the events that waited in the model follow. */
	storeRelease(in.fifo(a).head, tail);
	in.h.core_->doorbell();
	in.inject({ "syn" });
	CHECK(in.take(a).size() == 4);
	/* The driver's call and waiter counts reach the statistics, clamped. */
	auto before = in.h.core_->stats().inKernel[DeviceStats::Read];
	storeRelease(in.fifo(a).calls, in.fifo(a).calls + 3);
	CHECK(in.h.core_->stats().inKernel[DeviceStats::Read] == before + 3);
	storeRelease(in.fifo(a).waiters, 0xffffffffu);
	CHECK(in.h.core_->waitingCalls() == (1U << 20));
}
