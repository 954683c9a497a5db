// SPDX-License-Identifier: MIT
// Unit tests of the trace format: writing and reading operations, the errors a bad file gets, umockdev scripts.
#include "trace/ioctl_table.h"
#include "trace/trace.h"

#include <doctest/doctest.h>

#include <asm/ioctls.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

using namespace devemu::trace;

namespace {

std::vector<uint8_t> u8(std::string_view s)
{
	return { s.begin(), s.end() };
}

TraceOp roundTrip(const TraceOp &op)
{
	std::string line = formatOp(op);
	TraceOp back;
	std::string error;
	REQUIRE_MESSAGE(parseOp(line, back, error), line, ": ", error);
	CHECK(formatOp(back) == line);
	return back;
}

std::string parseError(std::string_view text)
{
	Trace t;
	std::string error;
	CHECK_FALSE(parseTrace(text, "bad.trace", t, error));
	return error;
}

} // namespace

TEST_CASE("trace: every operation survives a write and a read")
{
	TraceOp open;
	open.kind = OpKind::Open;
	open.file = 2;
	open.delay = std::chrono::microseconds(1'500'042);
	open.flags = O_RDWR | O_NONBLOCK;
	auto o = roundTrip(open);
	CHECK(o.file == 2);
	CHECK(o.delay.count() == 1'500'042);
	CHECK(o.flags == static_cast<uint32_t>(O_RDWR | O_NONBLOCK));

	TraceOp read;
	read.kind = OpKind::Read;
	read.data = u8("OK\r\n\"quoted\" \\ \x01");
	read.result = static_cast<int64_t>(read.data.size());
	CHECK(roundTrip(read).data == read.data);

	TraceOp binary;
	binary.kind = OpKind::Write;
	binary.data = { 0, 1, 2, 0xff, 0xfe };
	binary.result = -EIO;
	std::string line = formatOp(binary);
	CHECK(line.find("data=000102fffe") != std::string::npos); /* mostly binary: hex */
	CHECK(line.find("result=-EIO") != std::string::npos);
	auto b = roundTrip(binary);
	CHECK(b.data == binary.data);
	CHECK(b.result == -EIO);

	TraceOp ioctl;
	ioctl.kind = OpKind::Ioctl;
	ioctl.request = TCGETS;
	ioctl.out = std::vector<uint8_t>(36, 0x5a);
	line = formatOp(ioctl);
	CHECK(line.find("request=TCGETS") != std::string::npos);
	CHECK(roundTrip(ioctl).out == ioctl.out);

	TraceOp flush;
	flush.kind = OpKind::Ioctl;
	flush.request = TCFLSH;
	flush.arg = 2;
	CHECK(formatOp(flush).find("arg=0x2") != std::string::npos);
	CHECK(roundTrip(flush).arg == 2);

	TraceOp sized; /* not in the table, but size-encoded: a number */
	sized.kind = OpKind::Ioctl;
	sized.request = 0x802c542a; /* TCGETS2 */
	sized.out = { 1, 2, 3 };
	CHECK(formatOp(sized).find("request=0x802c542a") != std::string::npos);
	CHECK(roundTrip(sized).request == 0x802c542a);

	TraceOp poll;
	poll.kind = OpKind::Poll;
	poll.flags = 1;
	poll.revents = 5;
	CHECK(roundTrip(poll).revents == 5);

	TraceOp release;
	release.kind = OpKind::Release;
	release.file = 7;
	CHECK(roundTrip(release).file == 7);
}

TEST_CASE("trace: the ioctl table names requests and lays out their arguments")
{
	CHECK(ioctlName(TCGETS) == "TCGETS");
	CHECK(parseIoctlRequest("TIOCINQ") == FIONREAD);
	CHECK(parseIoctlRequest("0x5401") == TCGETS);
	CHECK(ioctlLayout(TCSETS)->arg == IoctlArg::In);
	CHECK(ioctlLayout(TIOCMGET)->size == sizeof(int));
	CHECK(ioctlLayout(0x802c542a)->arg == IoctlArg::Out); /* _IOR: from the number */
	CHECK(ioctlLayout(0x802c542a)->size == 44);
	CHECK_FALSE(ioctlLayout(TIOCSTI).has_value()); /* neither */
}

TEST_CASE("trace: a writer's file reads back, with the delays it measured")
{
	char dir[] = "/tmp/devemu-trace-XXXXXX";
	REQUIRE(mkdtemp(dir));
	std::string path = std::string(dir) + "/t.trace";
	{
		TraceWriter w;
		std::string error;
		REQUIRE(w.open(path, error) == 0);
		TraceOp op;
		op.kind = OpKind::Write;
		op.data = u8("AT\r");
		op.result = 3;
		w.append(op);
		usleep(20'000);
		op.kind = OpKind::Read;
		op.data = u8("OK\r\n");
		op.result = 4;
		w.append(op);
		CHECK(w.count() == 2);
	}
	Trace t;
	std::string error;
	REQUIRE_MESSAGE(readTrace(path, t, error), error);
	REQUIRE(t.ops.size() == 2);
	CHECK(t.ops[0].delay.count() == 0);
	CHECK(t.ops[1].delay >= std::chrono::milliseconds(20));
	CHECK(t.ops[1].line == 3); /* after the header */
	CHECK(t.ops[1].data == u8("OK\r\n"));
	unlink(path.c_str());
	rmdir(dir);
}

TEST_CASE("trace: errors name the file, the line and what is wrong")
{
	CHECK(parseError("read 0 +0 result=0\n") ==
	      "bad.trace:1: expected the header 'devemu-trace 1' before the first operation");
	CHECK(parseError("devemu-trace 2\n") == "bad.trace:1: 'devemu-trace 2': this reader knows version 1 "
						"('devemu-trace 1')");
	CHECK(parseError("# comment\ndevemu-trace 1\n\nreed 0 +0 result=0\n") ==
	      "bad.trace:4: unknown operation 'reed' (expected open, read, write, ioctl, poll or release)");
	CHECK(parseError("devemu-trace 1\nread 0 +0.5 result=2 data=\"a\"\n") ==
	      "bad.trace:2: read result=2 but data holds 1 bytes");
	CHECK(parseError("devemu-trace 1\nwrite 0 0.5 data=\"a\" result=1\n") ==
	      "bad.trace:2: '0.5' is not a delay (expected +SECONDS, e.g. +0.012500)");
	CHECK(parseError("devemu-trace 1\nwrite 0 +1 data=\"a\\q\" result=1\n") ==
	      "bad.trace:2: data: unknown escape '\\q'");
	CHECK(parseError("devemu-trace 1\nwrite 0 +1 data=\"abc result=1\n") ==
	      "bad.trace:2: a quoted string without its closing quote");
	CHECK(parseError("devemu-trace 1\nioctl 0 +1 request=TCGETZ result=0\n") ==
	      "bad.trace:2: request: not an ioctl name of the table nor a number");
	CHECK(parseError("devemu-trace 1\nioctl 0 +1 request=TCGETS\n") == "bad.trace:2: ioctl needs result=");
	CHECK(parseError("devemu-trace 1\nrelease 0 +1 data=00\n") ==
	      "bad.trace:2: release takes no 'data' (its keys: none)");
	CHECK(parseError("devemu-trace 1\nread 0 +1 result=-EWHAT\n") ==
	      "bad.trace:2: result: 'EWHAT' is not an errno name");
	CHECK(parseError("") == "bad.trace: empty: no 'devemu-trace 1' header");
	/* A recording or a copy cut short: the last line without its newline says so. */
	CHECK(parseError("devemu-trace 1\nwrite 0 +1 data=\"AT\\r\" result=3\nread 0 +0.2 result=4 data=\"OK") ==
	      "bad.trace:3: a quoted string without its closing quote (the file ends in this line without a "
	      "newline: cut short?)");
	CHECK(parseError("devemu-trace 1\nioctl 0 +1 request=TCGETS out=0102") ==
	      "bad.trace:2: ioctl needs result= (the file ends in this line without a newline: cut short?)");
	Trace whole;
	std::string wholeError;
	CHECK(parseTrace("devemu-trace 1\nread 0 +1 result=1 data=\"a\"", "ok.trace", whole, wholeError));
	CHECK(whole.ops.size() == 1); /* a whole last line needs no newline */

	Trace t;
	std::string error;
	CHECK_FALSE(readTrace("/nonexistent/x.trace", t, error));
	CHECK(error == "/nonexistent/x.trace: cannot open: No such file or directory");
}

TEST_CASE("trace: umockdev scripts read as umockdev reads them")
{
	Trace t;
	std::string error;
	REQUIRE_MESSAGE(parseUmockdevScript("w 0 ATZ^M\n"
					    "r 150 ^M^JOK^M^J\n"
					    "f 20 -\n"
					    "w 12 caret^`nul^@esc^[\n"
					    "r 0\n"
					    "Q\n"
					    "r 5 never read\n",
					    "modem.script", t, error),
			error);
	REQUIRE(t.ops.size() == 3); /* "r 0" reads nothing: only its delay is kept */
	CHECK(t.ops[0].kind == OpKind::Write);
	CHECK(t.ops[0].data == u8("ATZ\r"));
	CHECK(t.ops[0].fuzz == 0);
	CHECK(t.ops[1].kind == OpKind::Read);
	CHECK(t.ops[1].delay == std::chrono::milliseconds(150));
	CHECK(t.ops[1].data == u8("\r\nOK\r\n"));
	CHECK(t.ops[1].result == 6);
	CHECK(t.ops[2].data ==
	      std::vector<uint8_t>{ 'c', 'a', 'r', 'e', 't', '^', 'n', 'u', 'l', 0, 'e', 's', 'c', 27 });
	CHECK(t.ops[2].fuzz == 20);
	CHECK(t.ops[2].line == 4);

	CHECK_FALSE(parseUmockdevScript("r 1 ok\nx 2 what\n", "m.script", t, error));
	CHECK(error == "m.script:2: unknown operation 'x' (an umockdev script has r, w, f and Q lines)");
	CHECK_FALSE(parseUmockdevScript("r soon ok\n", "m.script", t, error));
	CHECK(error == "m.script:1: 'soon' is not a number (the delay in ms, or f's percentage)");
	CHECK_FALSE(parseUmockdevScript("r 1 ok^\n", "m.script", t, error));
	CHECK(error == "m.script:1: a ^ at the end of the line (escapes are ^ and one character)");
	CHECK_FALSE(parseUmockdevScript("w 1 ^a\n", "m.script", t, error));
	CHECK(error == "m.script:1: '^a' is not an escape (^@ to ^_ for bytes 0-31, ^` for ^)");
}
