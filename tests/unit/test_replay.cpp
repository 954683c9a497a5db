// SPDX-License-Identifier: MIT
// Unit tests of the replay and passthrough models through the harness: delays, matching, ioctls, recording a pty.
#include "harness.h"

#include "trace/trace.h"

#include <asm/termbits.h>
#include <fcntl.h>
#include <linux/rtc.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

using namespace devemu;
using namespace devemu::test;
using namespace std::chrono_literals;

namespace {

/* Runs the strand until the outcome is done or the time is up. */
bool waitDone(Harness &h, const std::shared_ptr<Outcome> &o, std::chrono::milliseconds limit)
{
	auto end = std::chrono::steady_clock::now() + limit;
	while (!o->done && std::chrono::steady_clock::now() < end)
		h.io_.run_one_for(5ms);
	return o->done;
}

std::string status(Harness &h, const char *verb = "status")
{
	std::string reply;
	CHECK(h.core_->inject({ verb }, reply) == 0);
	return reply;
}

const char *kModem = "devemu-trace 1\n"
		     "open 0 +0.000000 flags=02 result=0\n"
		     "write 0 +0.001000 data=\"AT\\r\" result=3\n"
		     "ioctl 0 +0.000100 request=TIOCMGET out=06010000 result=0\n"
		     "ioctl 0 +0.000100 request=TIOCMSET in=02000000 result=0\n"
		     "read 0 +0.200000 result=4 data=\"OK\\r\\n\"\n"
		     "release 0 +0.010000\n";

} // namespace

TEST_CASE("replay: a read waits for its recorded delay scaled by speed, O_NONBLOCK gets EAGAIN meanwhile")
{
	TempFile trace(kModem);
	Harness h("replay", { { "trace", trace.path }, { "speed", "4" } }); /* 200 ms -> 50 ms */
	int fh = h.open(O_RDWR);
	REQUIRE(fh >= 0);
	CHECK(h.write(fh, bytes("AT\r"))->result == 3);
	auto start = std::chrono::steady_clock::now();
	CHECK(h.read(fh, 16, true)->result == -EAGAIN);
	CHECK((h.poll(fh) & POLLIN) == 0);
	auto blocked = h.read(fh, 16);
	CHECK_FALSE(blocked->done);
	CHECK(status(h).find("next=read " + trace.path + ":6 (4 bytes), due in") != std::string::npos);
	REQUIRE(waitDone(h, blocked, 2000ms));
	auto waited = std::chrono::steady_clock::now() - start;
	CHECK(waited >= 45ms);
	CHECK(waited < 190ms); /* not the recorded 200 ms */
	CHECK(blocked->result == 4);
	CHECK(text(blocked->data) == "OK\r\n");
	h.release(fh);
	CHECK(status(h).find("position=6/6 next=finished mismatches=0") == 0);
}

TEST_CASE("replay: speed=0 replays at once, and a read may take the recorded bytes in parts")
{
	TempFile trace(kModem);
	Harness h("replay", { { "trace", trace.path }, { "speed", "0" } });
	int fh = h.open(O_RDWR);
	CHECK(h.write(fh, bytes("A"))->result == 1); /* a recorded write may come in parts */
	CHECK(h.write(fh, bytes("T\r"))->result == 2);
	CHECK((h.poll(fh) & POLLIN) != 0);
	auto first = h.read(fh, 2);
	CHECK(text(first->data) == "OK");
	auto rest = h.read(fh, 16);
	CHECK(text(rest->data) == "\r\n");
}

TEST_CASE("replay: a write that differs fails with EIO, or is accepted; fuzz allows a share of bytes to differ")
{
	TempFile trace(kModem);
	{
		Harness h("replay", { { "trace", trace.path }, { "speed", "0" } });
		int fh = h.open(O_RDWR);
		CHECK(h.write(fh, bytes("AX\r"))->result == -EIO);
		CHECK(status(h).find("mismatches=1") != std::string::npos);
		CHECK(h.write(fh, bytes("AT\r"))->result == 3); /* the replay did not move on */
		CHECK(h.write(fh, bytes("more"))->result == -EIO); /* the trace expects a read now */
	}
	{
		Harness h("replay", { { "trace", trace.path }, { "speed", "0" }, { "write_mismatch", "accept" } });
		int fh = h.open(O_RDWR);
		CHECK(h.write(fh, bytes("AX\r"))->result == 3);
		CHECK(text(h.read(fh, 16)->data) == "OK\r\n");
	}
	{
		Harness h("replay", { { "trace", trace.path }, { "speed", "0" }, { "fuzz", "34" } }); /* 1 of 3 */
		int fh = h.open(O_RDWR);
		CHECK(h.write(fh, bytes("AX\r"))->result == 3);
		CHECK(status(h).find("mismatches=0") != std::string::npos);
	}
}

TEST_CASE("replay: ioctls are answered from the recording by request and input; others get ENOTTY")
{
	TempFile trace(kModem);
	Harness h("replay", { { "trace", trace.path }, { "speed", "0" } });
	int fh = h.open(O_RDWR);
	FakeMemory mem;
	mem.regions[0x1000] = std::vector<std::byte>(4);
	CHECK(h.ioctl(fh, TIOCMGET, 0x1000, mem) == 0);
	int lines;
	std::memcpy(&lines, mem.regions[0x1000].data(), 4);
	CHECK(lines == 0x106);
	int set = 2;
	std::memcpy(mem.regions[0x1000].data(), &set, 4);
	CHECK(h.ioctl(fh, TIOCMSET, 0x1000, mem) == 0);
	set = 4; /* never recorded with this input */
	std::memcpy(mem.regions[0x1000].data(), &set, 4);
	CHECK(h.ioctl(fh, TIOCMSET, 0x1000, mem) == -EIO);
	CHECK(h.ioctl(fh, TCGETS, 0x1000, mem) == -ENOTTY); /* never recorded */
	CHECK(status(h).find("mismatches=1 unknown_ioctls=1") != std::string::npos);
}

static const char *kTwoFiles = "devemu-trace 1\n"
			       "open 0 +0.000000 flags=02 result=0\n"
			       "open 1 +0.000000 flags=0 result=0\n"
			       "write 0 +0.001000 data=\"AT\\r\" result=3\n"
			       "ioctl 1 +0.000100 request=TIOCMGET out=06010000 result=0\n"
			       "ioctl 0 +0.000100 request=TIOCMGET out=00000000 result=0\n"
			       "read 1 +0.000100 result=5 data=\"ring\\n\"\n"
			       "read 0 +0.000100 result=4 data=\"OK\\r\\n\"\n"
			       "release 1 +0.000100\n"
			       "release 0 +0.000100\n"
			       "open 2 +0.000100 flags=02 result=-EBUSY\n";

static int modemLines(Harness &h, int fh)
{
	FakeMemory mem;
	mem.regions[0x1000] = std::vector<std::byte>(4);
	CHECK(h.ioctl(fh, TIOCMGET, 0x1000, mem) == 0);
	int lines;
	std::memcpy(&lines, mem.regions[0x1000].data(), 4);
	return lines;
}

TEST_CASE("replay: each open file replays its own dialogue, opens taken in the recorded order")
{
	TempFile trace(kTwoFiles);
	Harness h("replay", { { "trace", trace.path }, { "speed", "0" } });
	int a = h.open(O_RDWR);
	int b = h.open(O_RDONLY);
	REQUIRE(a >= 0);
	REQUIRE(b >= 0);
	/* b's read does not wait for a's write: each file walks its own operations. */
	CHECK(text(h.read(b, 16)->data) == "ring\n");
	CHECK(modemLines(h, b) == 0x106);
	CHECK(modemLines(h, a) == 0); /* the same request answers each file as it was answered */
	CHECK(h.write(b, bytes("AT\r"))->result == -EIO); /* file 1 never wrote */
	CHECK(h.write(a, bytes("AT\r"))->result == 3);
	CHECK(text(h.read(a, 16)->data) == "OK\r\n");
	h.release(b);
	h.release(a);
	CHECK(h.open(O_RDWR) == -EBUSY); /* a recorded failing open fails the same */
	CHECK(status(h).find("position=10/10 next=finished mismatches=1") == 0);
	/* An open the recording does not have: its reads wait, the whole trace answers its ioctls. */
	int extra = h.open(O_RDWR);
	REQUIRE(extra >= 0);
	CHECK(h.read(extra, 16, true)->result == -EAGAIN);
	CHECK(modemLines(h, extra) == 0x106); /* the first recording of it */
	CHECK(status(h).find("mismatches=2") != std::string::npos);
}

TEST_CASE("replay: an open takes the first recorded open with its access mode")
{
	TempFile trace(kTwoFiles);
	Harness h("replay", { { "trace", trace.path }, { "speed", "0" } });
	int b = h.open(O_RDONLY); /* recorded second: file 1 */
	int a = h.open(O_RDWR);
	CHECK(text(h.read(b, 16)->data) == "ring\n");
	CHECK(h.write(a, bytes("AT\r"))->result == 3);
	CHECK(text(h.read(a, 16)->data) == "OK\r\n");
}

TEST_CASE("replay: a file's delays count from its own previous operation")
{
	TempFile trace("devemu-trace 1\n"
		       "open 0 +0.000000 flags=02 result=0\n"
		       "open 1 +0.000000 flags=02 result=0\n"
		       "read 1 +0.050000 result=1 data=\"b\"\n"
		       "read 0 +0.300000 result=1 data=\"a\"\n"
		       "read 1 +0.000000 result=1 data=\"c\"\n");
	Harness h("replay", { { "trace", trace.path } });
	int a = h.open(O_RDWR);
	int b = h.open(O_RDWR);
	auto start = std::chrono::steady_clock::now();
	auto rb = h.read(b, 1);
	REQUIRE(waitDone(h, rb, 2000ms));
	CHECK(text(rb->data) == "b");
	/* file 1's next read is due 300 ms after its previous one (the recorded time between them) */
	CHECK(h.read(b, 1, true)->result == -EAGAIN);
	auto ra = h.read(a, 1);
	REQUIRE(waitDone(h, ra, 2000ms));
	CHECK(text(ra->data) == "a");
	CHECK(std::chrono::steady_clock::now() - start >= 300ms);
}

TEST_CASE("replay: a recorded readiness with no read after it shows in poll once due, until the file moves on")
{
	/* hwclock: RTC_UIE_ON, select() until the update interrupt, RTC_UIE_OFF; the interrupt is never read. */
	TempFile trace("devemu-trace 1\n"
		       "open 0 +0.000000 flags=0 result=0\n"
		       "ioctl 0 +0.001000 request=RTC_UIE_ON result=0\n"
		       "poll 0 +0.100000 events=0x7 revents=0x1\n"
		       "ioctl 0 +0.000100 request=RTC_UIE_OFF result=0\n"
		       "release 0 +0.000100\n");
	Harness h("replay", { { "trace", trace.path } });
	int fh = h.open(O_RDONLY);
	FakeMemory mem;
	CHECK(h.ioctl(fh, RTC_UIE_ON, 0, mem) == 0);
	auto start = std::chrono::steady_clock::now();
	CHECK((h.poll(fh) & POLLIN) == 0);
	while ((h.poll(fh) & POLLIN) == 0 && std::chrono::steady_clock::now() - start < 2s)
		h.io_.run_one_for(5ms);
	CHECK(std::chrono::steady_clock::now() - start >= 90ms);
	CHECK((h.poll(fh) & POLLIN) != 0);
	CHECK(h.ioctl(fh, RTC_UIE_OFF, 0, mem) == 0);
	CHECK((h.poll(fh) & POLLIN) == 0);
	h.release(fh);
	CHECK(status(h).find("position=5/5 next=finished mismatches=0") == 0);
}

TEST_CASE("replay: an umockdev script is served as umockdev would")
{
	TempFile script("w 0 ATZ^M\nf 50 -\nr 30 ^M^JOK^M^J\nw 5 ATI^M\nr 0 devemu^`1^M^J\n", "modem.script");
	Harness h("replay", { { "script", script.path }, { "speed", "0" } });
	int fh = h.open(O_RDWR);
	CHECK(h.write(fh, bytes("ATZ\r"))->result == 4);
	CHECK(text(h.read(fh, 64)->data) == "\r\nOK\r\n");
	CHECK(h.write(fh, bytes("ATX\r"))->result == 4); /* f 50: half the bytes may differ */
	CHECK(text(h.read(fh, 64)->data) == "devemu^1\r\n");
}

TEST_CASE("replay: options are checked without reading the trace; a bad trace fails start with file and line")
{
	TempFile good(kModem);
	Harness h("replay", { { "trace", good.path } });
	auto build = [&](ModelOptions::Pairs pairs, std::string &optionError) {
		ModelOptions opts("dev", "replay", std::move(pairs));
		auto model = ModelRegistry::builtin().find("replay")->factory(opts, *h.core_);
		optionError = opts.error();
		return model;
	};
	std::string error;
	build({}, error);
	CHECK(error.find("give one of trace=FILE") != std::string::npos);
	build({ { "trace", "/nonexistent" }, { "speed", "-1" } }, error);
	CHECK_MESSAGE(error.find("option 'speed=-1'") != std::string::npos, error);
	build({ { "trace", "/nonexistent" } }, error);
	CHECK(error.empty()); /* nothing read yet */

	TempFile bad("devemu-trace 1\nread 0 +0.1 result=4 data=\"OK\"\n");
	auto model = build({ { "trace", bad.path } }, error);
	REQUIRE(error.empty());
	std::string startError;
	CHECK(model->start(startError) == -EINVAL);
	CHECK(startError == bad.path + ":2: read result=4 but data holds 2 bytes");
}

TEST_CASE("passthrough: forwards to a pty, parks a blocking read until the real node has data, records a trace")
{
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	REQUIRE(master >= 0);
	REQUIRE(grantpt(master) == 0);
	REQUIRE(unlockpt(master) == 0);
	std::string slave = ptsname(master);
	TempFile record;
	{
		Harness h("passthrough", { { "path", slave }, { "record", record.path } });
		int fh = h.open(O_RDWR);
		REQUIRE(fh >= 0);
		FakeMemory mem;
		mem.regions[0x1000] = std::vector<std::byte>(sizeof(termios));
		int rounds = 0;
		CHECK(h.ioctl(fh, TCGETS, 0x1000, mem, &rounds) == 0); /* not size-encoded: the table says */
		CHECK(rounds == 2);
		termios t;
		std::memcpy(&t, mem.regions[0x1000].data(), sizeof(t));
		CHECK((t.c_lflag & ICANON) != 0); /* a fresh pty is cooked */
		t.c_lflag &= ~(ICANON | ECHO);
		t.c_iflag &= ~ICRNL;
		std::memcpy(mem.regions[0x1000].data(), &t, sizeof(t));
		CHECK(h.ioctl(fh, TCSETS, 0x1000, mem) == 0);
		CHECK(h.ioctl(fh, TIOCSTI, 0x1000, mem) == -ENOTTY); /* neither in the table nor size-encoded */

		CHECK(h.read(fh, 16, true)->result == -EAGAIN);
		CHECK((h.poll(fh) & POLLIN) == 0);
		auto blocked = h.read(fh, 16);
		h.io_.run_for(20ms);
		CHECK_FALSE(blocked->done);
		REQUIRE(::write(master, "OK\r\n", 4) == 4);
		REQUIRE(waitDone(h, blocked, 2000ms));
		CHECK(text(blocked->data) == "OK\r\n");

		CHECK(h.write(fh, bytes("AT\r"))->result == 3);
		char buf[16];
		CHECK(::read(master, buf, sizeof(buf)) == 3);
		h.release(fh);
	}
	close(master);

	trace::Trace t;
	std::string error;
	REQUIRE_MESSAGE(trace::readTrace(record.path, t, error), error);
	std::vector<std::string> kinds;
	for (const auto &op : t.ops)
		kinds.emplace_back(trace::opName(op.kind));
	CHECK(kinds == std::vector<std::string>{ "open", "ioctl", "ioctl", "read", "write", "release" });
	CHECK(t.ops[1].out.size() == sizeof(termios));
	CHECK(t.ops[2].in.size() == sizeof(termios));
	CHECK(t.ops[3].data == std::vector<uint8_t>{ 'O', 'K', '\r', '\n' });
	CHECK(t.ops[3].delay >= 15ms); /* the read waited for the data */
}

TEST_CASE("passthrough: a missing node fails start, not option checking")
{
	Harness h("zero");
	ModelOptions opts("dev", "passthrough", { { "path", "/nonexistent/node" } });
	auto model = ModelRegistry::builtin().find("passthrough")->factory(opts, *h.core_);
	CHECK(opts.error().empty());
	std::string error;
	CHECK(model->start(error) == -ENOENT);
	CHECK(error == "cannot forward to /nonexistent/node: No such file or directory");

	ModelOptions none("dev", "passthrough", {});
	ModelRegistry::builtin().find("passthrough")->factory(none, *h.core_);
	CHECK(none.error().find("option 'path': required") != std::string::npos);
}
