// SPDX-License-Identifier: MIT
// Unit tests of the core's request semantics: parking, wake-up, O_NONBLOCK, cancel, poll readiness, hostile entries.
#include "harness.h"

#include <poll.h>

using namespace devemu;
using test::bytes;
using test::text;

TEST_CASE("a read on an empty device parks and is woken by a write")
{
	test::Harness h("loopback");
	int reader = h.open(), writer = h.open();
	auto r = h.read(reader, 100);
	CHECK_FALSE(r->done);
	CHECK(h.core_->parkedRequests() == 1);
	auto w = h.write(writer, bytes("wake"));
	CHECK(w->result == 4);
	REQUIRE(r->done);
	CHECK(r->result == 4);
	CHECK(text(r->data) == "wake");
	CHECK(h.core_->parkedRequests() == 0);
}

TEST_CASE("O_NONBLOCK gives -EAGAIN instead of parking, for reads and for writes on a full FIFO")
{
	test::Harness h("loopback", { { "capacity", "8" } });
	int fh = h.open();
	auto r = h.read(fh, 10, true);
	REQUIRE(r->done);
	CHECK(r->result == -EAGAIN);
	CHECK(h.write(fh, bytes("12345678"), true)->result == 8);
	auto w = h.write(fh, bytes("x"), true);
	REQUIRE(w->done);
	CHECK(w->result == -EAGAIN);
	CHECK(h.core_->parkedRequests() == 0);
}

TEST_CASE("a cancelled parked read ends with -EINTR and loses nothing written afterwards")
{
	test::Harness h("loopback");
	int fh = h.open();
	WindowDriver::RequestId id;
	auto r = h.read(fh, 10, false, &id);
	CHECK_FALSE(r->done);
	h.driver_->cancel(id);
	REQUIRE(r->done);
	CHECK(r->result == -EINTR);
	CHECK(h.write(fh, bytes("after"))->result == 5);
	auto again = h.read(fh, 10);
	REQUIRE(again->done);
	CHECK(text(again->data) == "after");
	CHECK(h.core_->stats().cancelled == 1);
}

TEST_CASE("a blocking write larger than the FIFO completes in parts as a reader drains it, in order")
{
	test::Harness h("loopback", { { "capacity", "16" } });
	int fh = h.open();
	std::string payload;
	for (int i = 0; i < 100; i++)
		payload += static_cast<char>('a' + i % 26);
	auto w = h.write(fh, bytes(payload));
	CHECK_FALSE(w->done); /* 16 bytes in, 84 waiting */
	std::string got;
	while (got.size() < payload.size()) {
		auto r = h.read(fh, 7);
		REQUIRE(r->done);
		REQUIRE(r->result > 0);
		got += text(r->data);
	}
	CHECK(got == payload);
	REQUIRE(w->done);
	CHECK(w->result == 100);
}

TEST_CASE("a cancelled write that made progress reports the bytes it wrote")
{
	test::Harness h("loopback", { { "capacity", "16" } });
	int fh = h.open();
	WindowDriver::RequestId id;
	auto w = h.write(fh, bytes(std::string(40, 'z')), false, &id);
	CHECK_FALSE(w->done);
	h.driver_->cancel(id);
	REQUIRE(w->done);
	CHECK(w->result == 16);
}

TEST_CASE("writes that fit the FIFO are atomic: concurrent writers never interleave")
{
	test::Harness h("loopback", { { "capacity", "10" } });
	int fh = h.open();
	CHECK(h.write(fh, bytes("AAAAAA"))->result == 6);
	auto b = h.write(fh, bytes("BBBBBB")); /* 4 free: waits, writing nothing */
	CHECK_FALSE(b->done);
	CHECK(text(h.read(fh, 1)->data) == "A");
	CHECK_FALSE(b->done); /* 5 free is still not 6: no partial frame */
	CHECK((h.poll(fh) & POLLIN) != 0);
	CHECK(text(h.read(fh, 2)->data) == "AA");
	REQUIRE(b->done);
	CHECK(b->result == 6);
	CHECK(text(h.read(fh, 100)->data) == "AAABBBBBB");
}

TEST_CASE("parked requests wake in arrival order")
{
	test::Harness h("loopback");
	int fh = h.open();
	auto r1 = h.read(fh, 1);
	auto r2 = h.read(fh, 1);
	auto r3 = h.read(fh, 1);
	h.write(fh, bytes("xy"));
	CHECK(r1->done);
	CHECK(r2->done);
	CHECK_FALSE(r3->done);
	CHECK(text(r1->data) == "x");
	CHECK(text(r2->data) == "y");
}

TEST_CASE("poll readiness follows the data and is published in the per-file shadow")
{
	test::Harness h("loopback", { { "capacity", "4" } });
	int fh = h.open();
	CHECK(h.poll(fh) == (POLLOUT | POLLWRNORM));
	auto seq0 = h.window_.fileShadow(fh).seq;
	h.write(fh, bytes("ab"));
	CHECK(h.poll(fh) == (POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM));
	auto s = seqlockRead(h.window_.fileShadow(fh));
	CHECK(s.readable == 2);
	CHECK(s.writable == 2);
	CHECK(s.revents == (POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM));
	CHECK(s.seq != seq0);
	CHECK(s.seq % 2 == 0);
	h.write(fh, bytes("cd"));
	CHECK(h.poll(fh) == (POLLIN | POLLRDNORM));
	CHECK(h.poll(fh, POLLOUT) == 0); /* only the events asked for */
	h.read(fh, 4);
	CHECK(h.poll(fh) == (POLLOUT | POLLWRNORM));
}

TEST_CASE("each new arrival bumps the shadow even when the mask stays POLLIN (edge-triggered waiters)")
{
	test::Harness h("loopback");
	int fh = h.open();
	int shadowInterrupts = 0;
	h.driver_->setShadowHandler([&] { shadowInterrupts++; });
	h.write(fh, bytes("1"));
	auto seq1 = h.window_.fileShadow(fh).seq;
	int after1 = shadowInterrupts;
	h.write(fh, bytes("2"));
	CHECK(h.window_.fileShadow(fh).seq != seq1);
	CHECK(shadowInterrupts == after1 + 1);
	CHECK(after1 >= 1);
}

TEST_CASE("open handles are reused after release and exhausted handles give -ENFILE")
{
	test::Harness h("zero");
	std::vector<int> fhs;
	for (unsigned i = 0; i < DEVEMU_MAX_FILES; i++)
		fhs.push_back(h.open());
	CHECK(fhs.back() == static_cast<int>(DEVEMU_MAX_FILES - 1));
	CHECK(h.open() == -ENFILE);
	h.release(17);
	CHECK(h.open() == 17);
	CHECK(h.core_->openFiles() == DEVEMU_MAX_FILES);
}

TEST_CASE("requests on a handle that is not open get -EBADF")
{
	test::Harness h("loopback");
	auto r = h.read(5, 10);
	REQUIRE(r->done);
	CHECK(r->result == -EBADF);
}

TEST_CASE("requests beyond the queue depth wait in the driver's backlog, and cancel works there too")
{
	test::Harness h("loopback", {}, { 4, 4096 });
	int fh = h.open();
	std::vector<std::shared_ptr<test::Outcome>> reads;
	std::vector<WindowDriver::RequestId> ids(6);
	for (int i = 0; i < 6; i++)
		reads.push_back(h.read(fh, 1, false, &ids[i]));
	CHECK(h.driver_->inFlight() == 4);
	CHECK(h.driver_->backlog() == 2);
	h.driver_->cancel(ids[5]); /* backlogged: ends at once */
	REQUIRE(reads[5]->done);
	CHECK(reads[5]->result == -EINTR);
	h.driver_->cancel(ids[0]); /* parked in the core: CANCEL entry; its tag goes to the backlog */
	REQUIRE(reads[0]->done);
	CHECK(reads[0]->result == -EINTR);
	CHECK(h.driver_->inFlight() == 4);
	CHECK(h.driver_->backlog() == 0);
	CHECK(h.core_->parkedRequests() == 4);
	h.core_->stop(-EIO);
	for (int i = 1; i < 5; i++) {
		REQUIRE(reads[i]->done);
		CHECK(reads[i]->result == -EIO);
	}
}

TEST_CASE("stop answers every parked request and refuses new opens")
{
	test::Harness h("loopback");
	int fh = h.open();
	auto r = h.read(fh, 10);
	CHECK_FALSE(r->done);
	h.core_->stop(-EIO);
	REQUIRE(r->done);
	CHECK(r->result == -EIO);
	CHECK(h.open() == -ENODEV);
}

TEST_CASE("malformed entries are dropped and counted, and the core keeps serving")
{
	test::Harness h("loopback");
	int fh = h.open();
	devemu_ring &sq = h.window_.sq();
	/* Publish entries by hand, as a hostile or buggy driver would. */
	auto publish = [&](devemu_sqe sqe) {
		h.window_.sqe(sq.tail) = sqe;
		storeRelease(sq.tail, sq.tail + 1);
		h.core_->doorbell();
	};
	devemu_sqe badTag{};
	badTag.opcode = DEVEMU_OP_READ;
	badTag.tag = 9999;
	publish(badTag);
	devemu_sqe badOp{};
	badOp.opcode = 200;
	badOp.tag = 60;
	publish(badOp);
	devemu_sqe huge{};
	huge.opcode = DEVEMU_OP_WRITE;
	huge.tag = 61;
	huge.fh = static_cast<uint32_t>(fh);
	huge.len = 0xffffffff;
	publish(huge);
	CHECK(h.core_->stats().protocolErrors == 2);
	/* The oversize write got an answer: -EINVAL in the completion ring. */
	devemu_cqe last = h.window_.cqe(h.window_.cq().tail - 1);
	CHECK(last.tag == 61);
	CHECK(last.result == -EINVAL);
	/* A tail that runs past the ring is skipped rather than followed. */
	storeRelease(sq.tail, sq.tail + 1000);
	h.core_->doorbell();
	CHECK(h.core_->stats().protocolErrors == 3);
	CHECK(h.write(fh, bytes("still"))->result == 5);
}

TEST_CASE("a request with a reserved flag or field set is refused with -EINVAL; such a cancel is dropped")
{
	test::Harness h("loopback");
	int fh = h.open();
	h.write(fh, bytes("kept"));
	devemu_sqe sqe{};
	sqe.opcode = DEVEMU_OP_READ;
	sqe.fh = static_cast<uint32_t>(fh);
	sqe.len = 4;
	for (uint16_t flag : { uint16_t(1u << 1), uint16_t(1u << 5), uint16_t(1u << 15) }) {
		sqe.flags = flag;
		CHECK(h.submit(sqe)->result == -EINVAL);
	}
	sqe.flags = 0;
	sqe.rsvd0 = 1;
	CHECK(h.submit(sqe)->result == -EINVAL);
	sqe.rsvd0 = 0;
	sqe.rsvd1 = 1;
	CHECK(h.submit(sqe)->result == -EINVAL);
	sqe.rsvd1 = 0;
	/* Capabilities without DEVEMU_SQE_F_CAPS are as reserved as the rest. */
	h.setCallerCaps(std::nullopt);
	sqe.caps = 1ULL << 63;
	CHECK(h.submit(sqe)->result == -EINVAL);
	/* Nothing was consumed by the refused reads; the known flags are accepted. */
	sqe.caps = 0;
	sqe.flags = DEVEMU_SQE_F_NONBLOCK | DEVEMU_SQE_F_COMPAT;
	CHECK(text(h.submit(sqe)->data) == "kept");

	/* A CANCEL has no completion of its own: one with a reserved field is dropped and counted. */
	WindowDriver::RequestId id;
	auto parked = h.read(fh, 4, false, &id);
	REQUIRE_FALSE(parked->done);
	devemu_ring &sq = h.window_.sq();
	devemu_sqe cancel{};
	cancel.opcode = DEVEMU_OP_CANCEL;
	cancel.tag = 0; /* the read's: the lowest free tag */
	cancel.epoch = h.window_.regs().attach_epoch;
	cancel.rsvd1 = 1;
	h.window_.sqe(sq.tail) = cancel;
	storeRelease(sq.tail, sq.tail + 1);
	h.core_->doorbell();
	CHECK_FALSE(parked->done);
	CHECK(h.core_->stats().protocolErrors == 1);
	h.driver_->cancel(id);
	REQUIRE(parked->done);
	CHECK(parked->result == -EINTR);
}

TEST_CASE("a served window says ACKNOWLEDGE | DRIVER_OK and the core leaves the reserved registers 0")
{
	test::Harness h("loopback");
	CHECK(h.window_.regs().status == (DEVEMU_STATUS_ACKNOWLEDGE | DEVEMU_STATUS_DRIVER_OK));
	int fh = h.open();
	h.write(fh, bytes("abc"));
	CHECK(h.read(fh, 2)->result == 2);
	CHECK(h.poll(fh) != 0);
	CHECK(h.window_.regs().reserved0 == 0);
	CHECK(h.window_.regs().reserved1 == 0);
	/* The device-wide shadow carries model status words only; a loopback publishes none. */
	const devemu_shadow &d = h.window_.shadow();
	CHECK(d.seq == 0);
	CHECK((d.reserved0[0] | d.reserved0[1] | d.reserved0[2]) == 0);
	/* The per-file shadow is where readiness is. */
	CHECK(seqlockRead(h.window_.fileShadow(fh)).readable == 1);
}

TEST_CASE("per-operation statistics are indexed and named by the uapi's opcode list")
{
	test::Harness h("loopback");
	int fh = h.open();
	h.write(fh, bytes("x"));
	h.read(fh, 1);
	h.read(fh, 1, true);
	const DeviceStats &s = h.core_->stats();
	CHECK(s.requests[DeviceStats::opOf(DEVEMU_OP_OPEN)] == 1);
	CHECK(s.requests[DeviceStats::opOf(DEVEMU_OP_WRITE)] == 1);
	CHECK(s.requests[DeviceStats::opOf(DEVEMU_OP_READ)] == 2);
	CHECK(s.errors[DeviceStats::Read] == 1); /* the -EAGAIN */
	std::vector<std::string> names;
	for (int op = 0; op < DeviceStats::OpCount; op++)
		names.push_back(DeviceStats::opName(static_cast<DeviceStats::Op>(op)));
	CHECK(names == std::vector<std::string>{ "open", "release", "read", "write", "ioctl", "poll", "cancel" });
	CHECK(std::string(DeviceStats::opName(DeviceStats::OpCount)) == "?");
}

TEST_CASE("completions from an old attach epoch are dropped by the driver")
{
	test::Harness h("loopback");
	int fh = h.open();
	auto r = h.read(fh, 10);
	CHECK_FALSE(r->done);
	h.window_.regs().attach_epoch++; /* the driver re-attached: the parked request is from before */
	h.write(fh, bytes("x"));
	CHECK_FALSE(r->done);
	CHECK(h.driver_->staleCompletions() >= 1);
}

TEST_CASE("one core serves two windows: bytes written through one are read through the other")
{
	test::Harness h("loopback");
	Window second;
	REQUIRE(Window::create({}, "second", 1, second) == 0);
	WindowDriver driver2(second, [&] { h.core_->doorbell(); });
	unsigned secondIndex = h.core_->attachWindow(second, [&](uint32_t isr) { driver2.interrupt(isr); });
	CHECK(secondIndex == 1);

	devemu_sqe open{};
	open.opcode = DEVEMU_OP_OPEN;
	int fh2 = -1;
	driver2.submit(open, {}, [&](const devemu_cqe &cqe, std::span<const std::byte>) { fh2 = cqe.result; });
	REQUIRE(fh2 == 0);
	/* A reader parked on the second window... */
	devemu_sqe read{};
	read.opcode = DEVEMU_OP_READ;
	read.fh = static_cast<uint32_t>(fh2);
	read.len = 64;
	std::string got;
	driver2.submit(read, {}, [&](const devemu_cqe &cqe, std::span<const std::byte> slot) {
		got.assign(reinterpret_cast<const char *>(slot.data()), static_cast<size_t>(cqe.result));
	});
	CHECK(got.empty());
	/* ...is woken by a writer on the first. */
	int fh1 = h.open();
	CHECK(fh1 == 0); /* handles are per window */
	h.write(fh1, bytes("across"));
	CHECK(got == "across");
	CHECK(h.core_->openFiles() == 2);
	/* The second driver goes away: its files are released, the first window keeps serving. */
	h.core_->detachWindow(secondIndex);
	CHECK(h.core_->openFiles() == 1);
	h.write(fh1, bytes("still"));
	CHECK(text(h.read(fh1, 10)->data) == "still");
}

TEST_CASE("injected faults: an errno for N requests, a short read, a delay that a cancel can end")
{
	test::Harness h("loopback");
	int fh = h.open();
	h.write(fh, bytes("0123456789"));
	FaultSpec eio;
	eio.op = DeviceStats::Read;
	eio.error = EIO;
	eio.count = 2;
	h.core_->setFault(eio);
	CHECK(h.read(fh, 4)->result == -EIO);
	CHECK(h.read(fh, 4)->result == -EIO);
	CHECK(h.core_->faults().empty()); /* used up */
	CHECK(text(h.read(fh, 4)->data) == "0123"); /* nothing was consumed by the failed reads */

	FaultSpec cut;
	cut.op = DeviceStats::Read;
	cut.shortLen = 1;
	cut.count = 1;
	h.core_->setFault(cut);
	CHECK(text(h.read(fh, 4)->data) == "4");
	CHECK(text(h.read(fh, 4)->data) == "5678");

	FaultSpec wait;
	wait.op = DeviceStats::Write;
	wait.delay = std::chrono::milliseconds(30);
	h.core_->setFault(wait);
	auto start = std::chrono::steady_clock::now();
	auto w = h.write(fh, bytes("late"));
	CHECK_FALSE(w->done);
	while (!w->done && std::chrono::steady_clock::now() - start < std::chrono::seconds(2))
		h.io_.run_one_for(std::chrono::milliseconds(100));
	REQUIRE(w->done);
	CHECK(w->result == 4);
	CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(30));
	WindowDriver::RequestId id;
	auto w2 = h.write(fh, bytes("never"), false, &id);
	CHECK_FALSE(w2->done);
	h.driver_->cancel(id);
	REQUIRE(w2->done);
	CHECK(w2->result == -EINTR);
	h.core_->clearFaults();
	CHECK(text(h.read(fh, 100)->data) == "9late");
	/* Latency is recorded per operation. */
	uint64_t reads = 0;
	for (auto n : h.core_->stats().latency[DeviceStats::Read])
		reads += n;
	CHECK(reads == 6);
}
