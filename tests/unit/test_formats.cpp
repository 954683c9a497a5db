// SPDX-License-Identifier: MIT
// Unit tests of the recordings replay reads besides its own traces: umockdev ioctl files and evemu files.
#include "harness.h"

#include "trace/evemu.h"
#include "trace/trace.h"
#include "trace/umockdev_ioctl.h"

#include <fcntl.h>
#include <linux/input.h>

#include <chrono>
#include <cstring>

using namespace devemu;
using namespace devemu::test;
using namespace devemu::trace;
using namespace std::chrono_literals;

namespace {

std::string ioctlFileError(std::string_view text)
{
	Trace t;
	std::string error;
	CHECK_FALSE(parseUmockdevIoctl(text, "dev.ioctl", t, error));
	return error;
}

std::string evemuError(std::string_view text)
{
	Trace t;
	std::string error;
	CHECK_FALSE(parseEvemu(text, "kbd.events", t, error));
	return error;
}

const TraceOp *findOp(const Trace &t, uint32_t request)
{
	for (const auto &op : t.ops)
		if (op.kind == OpKind::Ioctl && op.request == request)
			return &op;
	return nullptr;
}

/* A small keyboard as evemu-record writes it: description, then a key press and release. */
const char *kKeyboard = "# EVEMU 1.3\n"
			"# Input device name: \"devemu test kbd\"\n"
			"N: devemu test kbd\n"
			"I: 0003 1234 5678 0111\n"
			"P: 00 00 00 00 00 00 00 00\n"
			"B: 00 13 00 00 00 00 00 00 00\n"
			"B: 01 00 00 00 00 00 00 00 00\n"
			"B: 01 00 00 00 00 00 00 00 00\n"
			"B: 01 00 00 00 00 00 00 00 00\n"
			"A: 00 0 1023 0 0 12\n"
			"E: 0.000000 0004 0004 458756\t# EV_MSC / MSC_SCAN 458756\n"
			"E: 0.000000 0001 001e 0001\t# EV_KEY / KEY_A 1\n"
			"E: 0.000000 0000 0000 0000\t# ------------ SYN_REPORT (0) ----------\n"
			"E: 0.060000 0001 001e 0000\n"
			"E: 0.060000 0000 0000 0000\n";

input_event eventAt(const std::vector<std::byte> &data, size_t i)
{
	input_event e;
	std::memcpy(&e, data.data() + i * sizeof(e), sizeof(e));
	return e;
}

} // namespace

TEST_CASE("umockdev ioctl files: @DEV header, NAME(OFFSET) RET HEX lines, the length taken from the data")
{
	Trace t;
	std::string error;
	REQUIRE_MESSAGE(parseUmockdevIoctl("@DEV /dev/input/event5\n"
					   "# a comment\n"
					   "\n"
					   "EVIOCGBIT(1) 4 FEFFFFFF\n"
					   "EVIOCGNAME 9 6B6579626F61726400\n"
					   "EVIOCGID 0 0300341278561101\n"
					   "EVIOCGABS(1) 0 000000000000000000040000000000000000000000000000\n"
					   "EVIOCGPHYS -1 \n",
					   "kbd.ioctl", t, error),
			error);
	CHECK(t.device == "/dev/input/event5");
	REQUIRE(t.ops.size() == 5);
	CHECK(t.ops[0].request == EVIOCGBIT(EV_KEY, 4));
	CHECK(t.ops[0].result == 4);
	CHECK(t.ops[0].out == std::vector<uint8_t>{ 0xfe, 0xff, 0xff, 0xff });
	CHECK(t.ops[0].line == 4);
	CHECK(t.ops[1].request == EVIOCGNAME(9));
	CHECK(t.ops[2].request == EVIOCGID);
	CHECK(t.ops[3].request == EVIOCGABS(ABS_Y));
	CHECK(t.ops[4].result == -EINVAL); /* umockdev keeps no errno */

	CHECK(ioctlFileError("EVIOCGID 0 0300\n") == "dev.ioctl:1: EVIOCGID answers 8 bytes, the line holds 2");
	CHECK(ioctlFileError("\nUSBDEVFS_CONNECTINFO 0 0100\n") ==
	      "dev.ioctl:2: USBDEVFS_CONNECTINFO: USB device ioctls (usbdevfs) are not supported");
	CHECK(ioctlFileError("USBDEVFS_REAPURB 0 1 2 0 0 8 8 0 0102030405060708\n  USBDEVFS_REAPURB 0 1\n")
		      .starts_with("dev.ioctl:1: USBDEVFS_REAPURB"));
	CHECK(ioctlFileError("EVIOCGBIT(1) 0 FEFF\n EVIOCGBIT(2) 0 00\n")
		      .starts_with("dev.ioctl:2: an indented (nested) line"));
	CHECK(ioctlFileError("FROBNICATE 0 00\n").starts_with("dev.ioctl:1: 'FROBNICATE' is not an ioctl"));
	CHECK(ioctlFileError("EVIOCGBIT(1) 0 FEF\n") == "dev.ioctl:1: the data: an odd number of hex digits");
	CHECK(ioctlFileError("EVIOCGBIT(1) x FEFF\n") == "dev.ioctl:1: 'x' is not a return value");
	CHECK(ioctlFileError("EVIOCGBIT(99) 0 FEFF\n").starts_with("dev.ioctl:1: EVIOCGBIT(99): the offset"));
}

TEST_CASE("evemu files: the description answers EVIOCG* queries, events at one instant are one read")
{
	Trace t;
	std::string error;
	REQUIRE_MESSAGE(parseEvemu(kKeyboard, "kbd.events", t, error), error);
	const TraceOp *name = findOp(t, EVIOCGNAME(16));
	REQUIRE(name);
	CHECK(std::string(name->out.begin(), name->out.end()) == std::string("devemu test kbd") + '\0');
	CHECK(name->result == 16);
	const TraceOp *id = findOp(t, EVIOCGID);
	REQUIRE(id);
	input_id ident;
	std::memcpy(&ident, id->out.data(), sizeof(ident));
	CHECK(ident.bustype == 3);
	CHECK(ident.vendor == 0x1234);
	CHECK(ident.product == 0x5678);
	REQUIRE(findOp(t, EVIOCGBIT(0, 8)));
	CHECK(findOp(t, EVIOCGBIT(0, 8))->out[0] == 0x13);
	CHECK(findOp(t, EVIOCGBIT(EV_KEY, 24)) != nullptr); /* B: lines of a type add up */
	const TraceOp *abs = findOp(t, EVIOCGABS(ABS_X));
	REQUIRE(abs);
	input_absinfo info;
	std::memcpy(&info, abs->out.data(), sizeof(info));
	CHECK(info.maximum == 1023);
	CHECK(info.resolution == 12);

	std::vector<const TraceOp *> reads;
	for (const auto &op : t.ops)
		if (op.kind == OpKind::Read)
			reads.push_back(&op);
	REQUIRE(reads.size() == 2);
	CHECK(reads[0]->data.size() == 3 * sizeof(input_event));
	CHECK(reads[0]->line == 11);
	CHECK(reads[1]->data.size() == 2 * sizeof(input_event));
	CHECK(reads[1]->delay == 60ms);

	CHECK(evemuError("N: x\nI: 0003 1234\n") == "kbd.events:2: expected I: BUSTYPE VENDOR PRODUCT VERSION (hex)");
	CHECK(evemuError("N: x\nB: 99 00\n").starts_with("kbd.events:2: expected B: TYPE BYTES"));
	CHECK(evemuError("N: x\nB: 01 zz\n") == "kbd.events:2: 'zz' is not a hex byte");
	CHECK(evemuError("N: x\nA: 00 0 10\n") == "kbd.events:2: expected A: CODE MIN MAX FUZZ FLAT [RESOLUTION]");
	CHECK(evemuError("E: 0.5 0001 001e 1\n") == "kbd.events:1: '0.5' is not a time stamp (SEC.USEC, six digits)");
	CHECK(evemuError("E: 0.000000 0001 001e one\n") ==
	      "kbd.events:1: TYPE and CODE are hex, VALUE a decimal number");
	CHECK(evemuError("X: 1\n") == "kbd.events:1: 'X:' is not an evemu line (N: I: P: B: A: L: S: E:)");
	CHECK(evemuError("# EVEMU 1.3\n") == "kbd.events: no evemu description or events in it");
}

TEST_CASE("replay evemu=: EVIOCG* of any length answered, input_event reads at the recorded times")
{
	TempFile events(kKeyboard, "kbd.events");
	Harness h("replay", { { "evemu", events.path } });
	int fh = h.open(O_RDONLY);
	REQUIRE(fh >= 0);
	FakeMemory mem;
	mem.regions[0x1000] = std::vector<std::byte>(256);
	CHECK(h.ioctl(fh, EVIOCGNAME(256), 0x1000, mem) == 16); /* the string and its NUL, as evdev */
	CHECK(std::string(reinterpret_cast<const char *>(mem.regions[0x1000].data())) == "devemu test kbd");
	CHECK(h.ioctl(fh, EVIOCGNAME(4), 0x1000, mem) == 4);
	CHECK(h.ioctl(fh, EVIOCGBIT(EV_KEY, 96), 0x1000, mem) == 24);
	CHECK(h.ioctl(fh, EVIOCGPHYS(64), 0x1000, mem) == -ENOENT);
	CHECK(h.ioctl(fh, EVIOCGKEY(96), 0x1000, mem) == 96);

	auto start = std::chrono::steady_clock::now();
	auto first = h.read(fh, 24 * 64);
	REQUIRE(first->done);
	REQUIRE(first->data.size() == 3 * sizeof(input_event));
	CHECK(eventAt(first->data, 1).type == EV_KEY);
	CHECK(eventAt(first->data, 1).code == KEY_A);
	CHECK(eventAt(first->data, 1).value == 1);
	auto second = h.read(fh, 24 * 64);
	auto end = std::chrono::steady_clock::now() + 2s;
	while (!second->done && std::chrono::steady_clock::now() < end)
		h.io_.run_one_for(5ms);
	REQUIRE(second->done);
	CHECK(std::chrono::steady_clock::now() - start >= 55ms);
	CHECK(eventAt(second->data, 0).value == 0);
	CHECK(eventAt(second->data, 0).time.tv_usec == 60000); /* the recorded time stamp */
}

TEST_CASE("replay evemu=: a 32-bit caller reads 16-byte input_events; a smaller buffer is EINVAL")
{
	TempFile events(kKeyboard, "kbd.events");
	Harness h("replay", { { "evemu", events.path }, { "speed", "0" } });
	int fh = h.open(O_RDONLY);
	REQUIRE(fh >= 0);
	h.setCompat(true);
	CHECK(h.read(fh, 15)->result == -EINVAL);
	auto two = h.read(fh, 16 * 2 + 8); /* room for two whole events of the first frame's three */
	REQUIRE(two->done);
	REQUIRE(two->data.size() == 32);
	struct Event32 {
		int32_t sec, usec;
		uint16_t type, code;
		int32_t value;
	};
	static_assert(sizeof(Event32) == 16);
	auto at = [](const std::vector<std::byte> &d, size_t i) {
		Event32 e;
		std::memcpy(&e, d.data() + i * 16, 16);
		return e;
	};
	CHECK(at(two->data, 1).type == EV_KEY);
	CHECK(at(two->data, 1).code == KEY_A);
	CHECK(at(two->data, 1).value == 1);
	/* The third event of the frame next, then the 64-bit layout again for a 64-bit caller. */
	auto third = h.read(fh, 16 * 8);
	REQUIRE(third->done);
	CHECK(third->data.size() == 16);
	CHECK(at(third->data, 0).type == EV_SYN);
	h.setCompat(false);
	auto next = h.read(fh, 24 * 8);
	REQUIRE(next->done);
	CHECK(next->data.size() % sizeof(input_event) == 0);
	CHECK(eventAt(next->data, 0).value == 0);
	CHECK(eventAt(next->data, 0).time.tv_usec == 60000);
}

TEST_CASE("replay ioctl=: umockdev's answers alone; a query never recorded gets ENOTTY")
{
	TempFile ioctls("@DEV /dev/input/event5\nEVIOCGBIT(1) 4 FEFFFFFF\nEVIOCGID 0 0300341278561101\n", "kbd.ioctl");
	Harness h("replay", { { "ioctl", ioctls.path } });
	int fh = h.open(O_RDONLY);
	FakeMemory mem;
	mem.regions[0x1000] = std::vector<std::byte>(96);
	CHECK(h.ioctl(fh, EVIOCGBIT(EV_KEY, 96), 0x1000, mem) == 4);
	CHECK(mem.regions[0x1000][0] == std::byte{ 0xfe });
	CHECK(h.ioctl(fh, EVIOCGID, 0x1000, mem) == 0);
	CHECK(mem.regions[0x1000][2] == std::byte{ 0x34 });
	CHECK(h.ioctl(fh, EVIOCGABS(ABS_X), 0x1000, mem) == -ENOTTY);
}
