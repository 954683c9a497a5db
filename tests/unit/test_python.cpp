// SPDX-License-Identifier: MIT
// Unit tests of device behaviour written in Python: the python model, the serial far=python: line backend, i2c chips.
#include "harness.h"

#include <fmt/core.h>

#include <asm/termbits.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace devemu;
using test::bytes;
using test::text;

namespace {

/* A script in a directory of its own, removed at the end of the test. */
struct Script {
	std::filesystem::path dir;
	std::filesystem::path path;
	explicit Script(const std::string &source)
	{
		std::string tmpl = (std::filesystem::temp_directory_path() / "devemu-pytest-XXXXXX").string();
		REQUIRE(mkdtemp(tmpl.data()));
		dir = tmpl;
		path = dir / "device.py";
		std::ofstream(path) << source;
	}
	~Script() { std::filesystem::remove_all(dir); }
};

const char *kFifo = R"(
import errno, select

class Fifo:
    def __init__(self, device):
        self.device = device
        self.data = b""

    def read(self, file, size):
        if not self.data:
            raise BlockingIOError
        out, self.data = self.data[:size], self.data[size:]
        return out

    def write(self, file, data):
        if data == b"fail":
            raise RuntimeError("the device's code has a bug")
        if data == b"busy":
            raise OSError(errno.EBUSY, "busy")
        self.data += data
        self.device.notify(select.POLLIN)
        return len(data)

    def poll(self, file):
        return select.POLLOUT | (select.POLLIN if self.data else 0)

    def readable(self, file):
        return len(self.data)

    def inject_data(self, *words):
        self.data += " ".join(words).encode()
        self.device.notify(select.POLLIN)
        return f"{len(self.data)} bytes buffered"

    def inject_later(self, text):
        def arrive():
            self.data += text.encode()
            self.device.notify(select.POLLIN)
        self.device.call_later(0, arrive)

    # struct { __u64 ptr; __u32 len; }: the caller's buffer comes back reversed; returns len
    def ioctl(self, file, cmd, call):
        if cmd != 0x4201:
            raise OSError(errno.ENOTTY, "")
        import struct
        ptr, n = struct.unpack("QI4x", call.read_user(call.arg, 16))
        buf = call.read_user(ptr, n)
        call.write_user(ptr, buf[::-1])
        return n
)";

/* Runs the strand's timers and posted work for a while. */
void settle(test::Harness &h)
{
	h.io_.restart();
	h.io_.run_for(std::chrono::milliseconds(30));
}

} // namespace

TEST_CASE("python model: reads park until a write notifies; O_NONBLOCK says EAGAIN; readable() from Python")
{
	Script s(kFifo);
	test::Harness h("python", { { "script", s.path.string() }, { "class", "Fifo" } });
	int fh = h.open();
	REQUIRE(fh >= 0);
	CHECK(h.read(fh, 10, true)->result == -EAGAIN);
	auto parked = h.read(fh, 10);
	CHECK_FALSE(parked->done);
	CHECK(h.write(fh, bytes("hello"))->result == 5);
	REQUIRE(parked->done);
	CHECK(text(parked->data) == "hello");
	CHECK(h.write(fh, bytes("abc"))->result == 3);
	test::FakeMemory mem;
	mem.regions[0x1000].resize(4);
	REQUIRE(h.ioctl(fh, DEVEMU_IOC_NREAD, 0x1000, mem) == 0); /* the core asks readable() */
	uint32_t n;
	std::memcpy(&n, mem.regions[0x1000].data(), 4);
	CHECK(n == 3);
}

TEST_CASE("python model: an exception fails that request with EIO, an OSError with its errno; the next one works")
{
	Script s(kFifo);
	test::Harness h("python", { { "script", s.path.string() }, { "class", "Fifo" } });
	int fh = h.open();
	CHECK(h.write(fh, bytes("fail"))->result == -EIO);
	CHECK(h.write(fh, bytes("busy"))->result == -EBUSY);
	CHECK(h.write(fh, bytes("ok"))->result == 2);
	CHECK(text(h.read(fh, 10)->data) == "ok");
}

TEST_CASE("python model: an ioctl reads and writes caller memory through retry rounds")
{
	Script s(kFifo);
	test::Harness h("python", { { "script", s.path.string() }, { "class", "Fifo" } });
	int fh = h.open();
	test::FakeMemory mem;
	constexpr uint64_t kArg = 0x10000, kBuf = 0x20000;
	struct {
		uint64_t ptr;
		uint32_t len;
		uint32_t pad;
	} arg{ kBuf, 5, 0 };
	mem.regions[kArg] = std::vector<std::byte>(sizeof(arg));
	std::memcpy(mem.regions[kArg].data(), &arg, sizeof(arg));
	mem.regions[kBuf] = bytes("abcde");
	int rounds = 0;
	CHECK(h.ioctl(fh, 0x4201, kArg, mem, &rounds) == 5);
	CHECK(rounds == 4); /* the argument, the buffer it points to, room for the answer, done */
	CHECK(text(mem.regions[kBuf]) == "edcba");
	CHECK(h.ioctl(fh, 0x4202, kArg, mem) == -ENOTTY);
}

TEST_CASE("python model: file.caller_capable() asks about the caller of the current request, not the opener")
{
	Script s(R"(
import errno

class Clock:
    def __init__(self, device):
        pass

    def write(self, file, data):
        if not file.caller_capable(25):  # CAP_SYS_TIME
            raise OSError(errno.EACCES, "")
        return len(data)
)");
	test::Harness h("python", { { "script", s.path.string() }, { "class", "Clock" } });
	int fh = h.open(); /* opened with every capability */
	h.setCallerCaps(~(1ULL << 25));
	CHECK(h.write(fh, bytes("set"))->result == -EACCES);
	h.setCallerCaps(1ULL << 25);
	CHECK(h.write(fh, bytes("set"))->result == 3);
}

TEST_CASE("python model: inject verbs are inject_* methods; timers run on the strand and wake readers")
{
	Script s(kFifo);
	test::Harness h("python", { { "script", s.path.string() }, { "class", "Fifo" } });
	int fh = h.open();
	std::string reply;
	CHECK(h.core_->inject({}, reply) == -EINVAL);
	CHECK(reply == "verbs: data later");
	CHECK(h.core_->inject({ "data", "hi", "there" }, reply) == 0);
	CHECK(reply == "8 bytes buffered");
	CHECK(text(h.read(fh, 100)->data) == "hi there");
	auto parked = h.read(fh, 100);
	CHECK(h.core_->inject({ "later", "tick" }, reply) == 0);
	CHECK_FALSE(parked->done);
	settle(h);
	REQUIRE(parked->done);
	CHECK(text(parked->data) == "tick");
}

TEST_CASE("python model: an import error, a syntax error, a raising constructor or a missing class fail the start with "
	  "the reason")
{
	asio::io_context io;
	DeviceCore core(asio::make_strand(io), "test");
	/* What start() says of script with class cls. */
	auto startError = [&](const std::string &script, const std::string &cls = "Device") {
		ModelOptions opts("test", "python", { { "script", script }, { "class", cls } });
		auto model = ModelRegistry::builtin().find("python")->factory(opts, core);
		REQUIRE(model);
		std::string error;
		CHECK(model->start(error) < 0);
		return error;
	};
	Script missingImport("import nonexistent_module_xyz\n");
	CHECK(startError(missingImport.path.string()).find("ModuleNotFoundError") != std::string::npos);
	Script syntax("class Device:\n    def read(self, file, size)\n        return b''\n");
	CHECK(startError(syntax.path.string()).find("SyntaxError") != std::string::npos);
	Script raising("class Device:\n    def __init__(self, device):\n        raise ValueError('no hardware')\n");
	CHECK(startError(raising.path.string()).find("ValueError: no hardware") != std::string::npos);
	CHECK(startError(raising.path.string(), "Nope").find("defines no 'Nope'") != std::string::npos);

	ModelOptions badClass("test", "python", { { "script", raising.path.string() }, { "class", "1x" } });
	CHECK_FALSE(ModelRegistry::builtin().find("python")->factory(badClass, core));

	ModelOptions bad("test", "python", { { "script", "/nonexistent/x.py" } });
	CHECK_FALSE(ModelRegistry::builtin().find("python")->factory(bad, core));
	CHECK(bad.error().find("script") != std::string::npos);
}

TEST_CASE("serial far=python: the far end receives what the program sends, sees the line, drives the modem lines")
{
	Script s(R"(
class Echo:
    def __init__(self, line):
        self.line = line
        self.settings = None
        self.lines = None
        self.got = b""
        line.set_modem(dcd=False, ri=True)

    def line_settings(self, baud, bits, parity, stop):
        self.settings = f"{baud} {bits}{parity}{stop}"

    def modem_control(self, dtr, rts):
        self.lines = f"dtr={int(dtr)} rts={int(rts)}"

    def received(self, data):
        self.got += data
        if b"ping" in self.got:
            self.got = b""
            self.line.send(f"pong {self.settings} {self.lines}\n".encode())
)");
	test::Harness h("serial", { { "pace", "none" }, { "far", "python:" + s.path.string() + ":Echo" } });
	int fh = h.open();
	REQUIRE(fh >= 0);
	settle(h);
	test::FakeMemory mem;
	mem.regions[0x1000].resize(4);
	REQUIRE(h.ioctl(fh, TIOCMGET, 0x1000, mem) == 0);
	int m;
	std::memcpy(&m, mem.regions[0x1000].data(), 4);
	CHECK((m & TIOCM_CAR) == 0);
	CHECK((m & TIOCM_RNG) != 0);
	CHECK((m & TIOCM_DSR) != 0);
	auto r = h.read(fh, 100);
	CHECK(h.write(fh, bytes("ping"))->result == 4);
	settle(h);
	REQUIRE(r->done);
	CHECK(text(r->data) == "pong 9600 8N1 dtr=1 rts=1\n");
}

TEST_CASE("serial far=python: breaks both ways")
{
	Script s(R"(
class Breaker:
    def __init__(self, line):
        self.line = line
        self.breaks = []

    def break_condition(self, on):
        self.breaks.append(int(on))
        if not on:
            self.line.send(f"seen {self.breaks}".encode())
            self.line.send_break()
            self.line.send(b"\n")
)");
	test::Harness h("serial", { { "pace", "none" }, { "far", "python:" + s.path.string() + ":Breaker" } });
	int fh = h.open();
	test::FakeMemory mem;
	REQUIRE(h.ioctl(fh, TIOCSBRK, 0, mem) == 0);
	REQUIRE(h.ioctl(fh, TIOCCBRK, 0, mem) == 0);
	auto r = h.read(fh, 100);
	settle(h);
	REQUIRE(r->done);
	/* No IGNBRK, BRKINT or PARMRK: a break is read as a NUL. */
	CHECK(text(r->data) == std::string("seen [1, 0]\0\n", 13));
}

namespace {

/* A register-file chip in Python: the first byte written sets the pointer, reads auto-increment. */
const char *kChip = R"(
class Regs:
    def __init__(self, chip):
        self.chip = chip
        self.regs = bytearray(range(256))
        self.ptr = None
        self.reads = 0
        self.events = []

    def start(self):
        self.ptr_set = False

    def select(self, read):
        self.events.append("R" if read else "W")
        return self.regs[0xfe] != 0      # register 0xfe = 0: the chip stops answering

    def write(self, byte):
        if not self.ptr_set:
            self.ptr, self.ptr_set = byte, True
        elif self.ptr == 0xee:
            raise RuntimeError("register 0xee is broken")
        else:
            self.regs[self.ptr] = byte
            self.ptr = (self.ptr + 1) & 0xff

    def read(self):
        self.reads += 1
        if self.ptr == 0xef:
            return 300
        value = self.regs[self.ptr]
        self.ptr = (self.ptr + 1) & 0xff
        return value

    def stop(self):
        self.events.append("P")

    def describe(self):
        return f"regs at 0x{self.chip.address:02x}, {self.reads} bytes read\n"

    def inject(self, verb, *args):
        if verb == "events":
            out, self.events = " ".join(self.events), []
            return out
        if verb == "set":
            self.regs[int(args[0], 0)] = int(args[1], 0)
            return None
        raise ValueError(f"unknown verb {verb}")
)";

/* One SMBus read byte data through the core's retry rounds; the byte, or -errno. */
int smbusReadByteData(test::Harness &h, int fh, uint8_t command, int *rounds = nullptr)
{
	test::FakeMemory mem;
	i2c_smbus_ioctl_data a{ I2C_SMBUS_READ, command, I2C_SMBUS_BYTE_DATA,
				reinterpret_cast<i2c_smbus_data *>(0x2000) };
	mem.regions[0x1000].resize(sizeof(a));
	std::memcpy(mem.regions[0x1000].data(), &a, sizeof(a));
	mem.regions[0x2000].resize(sizeof(i2c_smbus_data));
	int ret = h.ioctl(static_cast<uint32_t>(fh), I2C_SMBUS, 0x1000, mem, rounds);
	return ret < 0 ? ret : static_cast<int>(mem.regions[0x2000][0]);
}

std::string injectReply(test::Harness &h, std::vector<std::string> args, int expect = 0)
{
	std::string reply;
	CHECK(h.core_->inject(args, reply) == expect);
	return reply;
}

} // namespace

TEST_CASE("i2c python: chip: a chip in Python beside the built-in ones answers SMBus and plain reads and writes")
{
	Script s(kChip);
	test::Harness h("i2c", { { "slaves", "python:" + s.path.string() + ":Regs@0x20+eeprom@0x50" } });
	int fh = h.open();
	REQUIRE(fh >= 0);
	test::FakeMemory mem;
	REQUIRE(h.ioctl(fh, I2C_SLAVE, 0x20, mem) == 0);
	CHECK(h.write(fh, bytes("\x10\xaa\xbb"))->result == 3); /* pointer 0x10, two registers */
	CHECK(h.write(fh, bytes("\x10"))->result == 1);
	CHECK(h.read(fh, 3)->data == bytes("\xaa\xbb\x12"));
	int rounds = 0;
	CHECK(smbusReadByteData(h, fh, 0x11, &rounds) == 0xbb);
	CHECK(rounds == 3);
	/* The SMBus read ran once on the chip although it took three rounds: one select each way. */
	CHECK(injectReply(h, { "chip", "0x20", "events" }) == "W P W P R P W R P");
	CHECK(injectReply(h, { "chip", "0x20" }) == "regs at 0x20, 4 bytes read\n");
	CHECK(injectReply(h, { "slaves" }).find("0x20 python:" + s.path.string() + ":Regs\n") != std::string::npos);
	/* the EEPROM beside it still works */
	REQUIRE(h.ioctl(fh, I2C_SLAVE, 0x50, mem) == 0);
	CHECK(smbusReadByteData(h, fh, 0) == 0xff);
}

TEST_CASE("i2c python: a chip that raises, returns a non-byte or NAKs fails the transfer; the next one works")
{
	Script s(kChip);
	test::Harness h("i2c", { { "slaves", "python:" + s.path.string() + ":Regs@0x20" } });
	int fh = h.open();
	test::FakeMemory mem;
	REQUIRE(h.ioctl(fh, I2C_SLAVE, 0x20, mem) == 0);
	CHECK(h.write(fh, bytes("\xee\x01"))->result == -EIO); /* write() raised */
	CHECK(h.write(fh, bytes("\xef"))->result == 1);
	CHECK(h.read(fh, 1)->result == -EIO); /* read() returned 300 */
	CHECK(smbusReadByteData(h, fh, 0x30) == 0x30);
	CHECK(injectReply(h, { "chip", "0x20", "set", "0xfe", "0" }).empty());
	CHECK(smbusReadByteData(h, fh, 0x30) == -ENXIO); /* select() NAKs */
	CHECK(injectReply(h, { "chip", "0x20", "nope" }, -EINVAL) == "unknown verb nope");
	CHECK(injectReply(h, { "chip", "0x21" }, -ENODEV) == "no chip at 0x21");
}

TEST_CASE("i2c python: a bad chip file or class is the option's or the start's error")
{
	asio::io_context io;
	DeviceCore ctx(asio::make_strand(io), "test");
	ModelOptions missing("test", "i2c", { { "slaves", "python:/nonexistent/chip.py@0x20" } });
	CHECK_FALSE(ModelRegistry::builtin().find("i2c")->factory(missing, ctx));
	CHECK(missing.error().find("slaves") != std::string::npos);
	CHECK(missing.error().find("/nonexistent/chip.py") != std::string::npos);

	Script s(kChip);
	ModelOptions twice("test", "i2c", { { "slaves", "python:" + s.path.string() + ":Regs@0x50+eeprom@0x50" } });
	CHECK_FALSE(ModelRegistry::builtin().find("i2c")->factory(twice, ctx));
	CHECK(twice.error().find("two chips at 0x50") != std::string::npos);

	ModelOptions noClass("test", "i2c", { { "slaves", "python:" + s.path.string() + "@0x20" } });
	auto model = ModelRegistry::builtin().find("i2c")->factory(noClass, ctx);
	REQUIRE(model);
	std::string error;
	CHECK(model->start(error) < 0);
	CHECK(error.find("the chip at 0x20") != std::string::npos);
	CHECK(error.find("defines no 'Chip'") != std::string::npos);
}
