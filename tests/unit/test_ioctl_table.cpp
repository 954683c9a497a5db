// SPDX-License-Identifier: MIT
// Unit tests of the shared ioctl table: names of the i2c-dev, evdev, rtc and watchdog ioctls; I2C_RDWR replayed.
#include "harness.h"

#include "trace/ioctl_table.h"

#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <linux/input.h>
#include <linux/rtc.h>
#include <linux/watchdog.h>

using namespace devemu;
using namespace devemu::test;
using namespace devemu::trace;

TEST_CASE("ioctl table: i2c-dev, evdev, rtc and watchdog ioctls are named, families with their arguments")
{
	CHECK(ioctlName(I2C_RDWR) == "I2C_RDWR");
	CHECK(ioctlLayout(I2C_RDWR)->arg == IoctlArg::Pointers);
	CHECK(ioctlLayout(I2C_SMBUS)->pointers != nullptr);
	CHECK(ioctlLayout(I2C_SLAVE)->arg == IoctlArg::Value);
	CHECK(ioctlName(EVIOCGBIT(EV_KEY, 96)) == "EVIOCGBIT(1,96)");
	CHECK(parseIoctlRequest("EVIOCGBIT(1,96)") == EVIOCGBIT(EV_KEY, 96));
	CHECK(ioctlName(EVIOCGNAME(256)) == "EVIOCGNAME(256)");
	CHECK(parseIoctlRequest("EVIOCGNAME(256)") == EVIOCGNAME(256));
	CHECK(ioctlName(EVIOCGABS(ABS_Y)) == "EVIOCGABS(1)");
	CHECK(ioctlLayout(EVIOCGABS(ABS_Y))->size == sizeof(input_absinfo));
	CHECK(ioctlName(EVIOCGID) == "EVIOCGID");
	CHECK(ioctlLayout(EVIOCGRAB)->arg == IoctlArg::Value); /* _IOW by number, a value in fact */
	CHECK(ioctlName(RTC_RD_TIME) == "RTC_RD_TIME");
	CHECK(ioctlLayout(RTC_RD_TIME)->arg == IoctlArg::Out);
	CHECK(ioctlLayout(RTC_AIE_ON)->arg == IoctlArg::None);
	CHECK(ioctlLayout(RTC_IRQP_SET)->arg == IoctlArg::Value);
	CHECK(ioctlName(WDIOC_KEEPALIVE) == "WDIOC_KEEPALIVE");
	CHECK(ioctlLayout(WDIOC_SETOPTIONS)->arg == IoctlArg::In); /* _IOR by number, read by the driver */
	CHECK(ioctlLayout(WDIOC_SETTIMEOUT)->arg == IoctlArg::InOut);
	CHECK_FALSE(parseIoctlRequest("EVIOCGNAME").has_value()); /* a family needs its length */
	CHECK_FALSE(parseIoctlRequest("EVIOCGBIT(40,8)").has_value()); /* past EV_MAX */
	CHECK_FALSE(parseIoctlRequest("TCGETS(1)").has_value());
}

TEST_CASE("replay: I2C_RDWR is matched by its flattened messages and answers into the caller's read buffers")
{
	/* write 0x10 to 0x50, then read 2 bytes: addr, flags, len (16-bit LE each), then a write's bytes */
	TempFile trace("devemu-trace 1\n"
		       "ioctl 0 +0.000000 request=I2C_RDWR in=50000000010010500001000200 out=abcd result=2\n");
	Harness h("replay", { { "trace", trace.path }, { "speed", "0" } });
	int fh = h.open(O_RDWR);
	struct Msg {
		uint16_t addr, flags, len, pad;
		uint64_t buf;
	};
	struct Rdwr {
		uint64_t msgs;
		uint32_t nmsgs, pad;
	};
	FakeMemory mem;
	auto put = [&](uint64_t addr, const auto &value) {
		auto b = std::as_bytes(std::span(&value, 1));
		mem.regions[addr] = { b.begin(), b.end() };
	};
	put(0x1000, Rdwr{ 0x2000, 2, 0 });
	Msg msgs[2] = { { 0x50, 0, 1, 0, 0x3000 }, { 0x50, I2C_M_RD, 2, 0, 0x4000 } };
	put(0x2000, msgs);
	mem.regions[0x3000] = { std::byte{ 0x10 } };
	mem.regions[0x4000] = std::vector<std::byte>(2);
	CHECK(h.ioctl(fh, I2C_RDWR, 0x1000, mem) == 2);
	CHECK(mem.regions[0x4000] == std::vector<std::byte>{ std::byte{ 0xab }, std::byte{ 0xcd } });
	mem.regions[0x3000] = { std::byte{ 0x11 } }; /* another register: never recorded */
	CHECK(h.ioctl(fh, I2C_RDWR, 0x1000, mem) == -EIO);
}
