// SPDX-License-Identifier: MIT
// Unit tests of the stream FIFOs, from a fake driver side: index arithmetic and wrap, records, watermarks and kicks,
// one interrupt per batch, hostile indices, the request path served by the same produce()/consume(), and loops.
#include "harness.h"

#include "devemu/window.h"
#include "devemu/window_driver.h"

#include <fcntl.h>
#include <numeric>
#include <poll.h>

using namespace devemu;

namespace {

/* A streaming model: produces a counting byte sequence (budget bytes at most), consumes into a bounded sink. */
class CountingStream final : public Model
{
public:
	explicit CountingStream(uint32_t record = 1, bool constant = false) : record_(record), constant_(constant) {}
	StreamSpec stream() const override
	{
		return { .rx = true, .tx = true, .record = record_, .constantRx = constant_ };
	}
	size_t produce(std::span<std::byte> out) override
	{
		size_t n = std::min<size_t>(out.size(), budget);
		for (size_t i = 0; i < n; i++)
			out[i] = std::byte(next++);
		budget -= n;
		produceCalls++;
		return n;
	}
	size_t consume(std::span<const std::byte> in) override
	{
		size_t n = std::min(in.size(), sinkRoom);
		sink.insert(sink.end(), in.begin(), in.begin() + static_cast<ptrdiff_t>(n));
		sinkRoom -= n;
		return n;
	}
	uint32_t poll(const OpenFile &) override { return POLLIN | POLLOUT; }

	uint32_t record_;
	bool constant_;
	size_t budget = SIZE_MAX;
	uint8_t next = 0;
	size_t produceCalls = 0;
	std::vector<std::byte> sink;
	size_t sinkRoom = SIZE_MAX;
};

/* A core with one window of 4 KiB FIFOs, and the driver's side done by hand. */
struct StreamRig {
	explicit StreamRig(uint32_t record = 1, uint64_t offered = DEVEMU_F_STREAM | DEVEMU_F_NEED_KICK,
			   bool constant = false)
		: strand(io.get_executor()), core(strand, "stream")
	{
		REQUIRE(Window::create({ 8, 4096, 4096, 4096 }, "stream", 1, window) == 0);
		window.regs().features_offered = offered;
		auto m = std::make_unique<CountingStream>(record, constant);
		model = m.get();
		core.setModel(std::move(m));
		core.attachWindow(window, [this](uint32_t isr) {
			interrupts++;
			lastIsr = isr;
		});
	}
	devemu_fifo &rx() { return window.rxFifo(); }
	devemu_fifo &tx() { return window.txFifo(); }
	/* The driver reads n bytes of the receive FIFO. */
	std::vector<std::byte> driverRead(uint32_t n)
	{
		std::vector<std::byte> out;
		auto data = window.rxFifoData();
		for (uint32_t i = 0; i < n; i++)
			out.push_back(data[(rxHead + i) & (data.size() - 1)]);
		rxHead += n;
		storeRelease(rx().head, rxHead);
		return out;
	}
	void driverWrite(std::span<const std::byte> in)
	{
		auto data = window.txFifoData();
		for (size_t i = 0; i < in.size(); i++)
			data[(txTail + i) & (data.size() - 1)] = in[i];
		txTail += static_cast<uint32_t>(in.size());
		storeRelease(tx().tail, txTail);
	}

	asio::io_context io;
	Strand strand;
	Window window;
	DeviceCore core;
	CountingStream *model = nullptr;
	uint32_t rxHead = 0, txTail = 0;
	int interrupts = 0;
	uint32_t lastIsr = 0;
};

} // namespace

TEST_CASE("the core fills the receive FIFO ahead of readers, with one interrupt per batch, and asks for a kick")
{
	StreamRig rig;
	CHECK((rig.window.regs().features_accepted & DEVEMU_F_STREAM) != 0);
	rig.core.doorbell();
	CHECK(rig.rx().tail == 4096);
	CHECK(rig.rx().watermark == 2048);
	CHECK(rig.rx().record == 1);
	CHECK(rig.rx().kick == 1); /* full, and the model has more */
	CHECK(rig.interrupts == 1);
	CHECK((rig.lastIsr & DEVEMU_ISR_STREAM) != 0);
	auto got = rig.driverRead(100);
	CHECK(got[0] == std::byte{ 0 });
	CHECK(got[99] == std::byte{ 99 });
	/* The driver kicks only below the watermark; the core refills on the doorbell, across the wrap. */
	rig.driverRead(3000);
	rig.core.doorbell();
	CHECK(rig.rx().tail == 3100 + 4096);
	CHECK(rig.interrupts == 2);
	auto wrapped = rig.driverRead(4096);
	for (uint32_t i = 0; i < wrapped.size(); i++)
		REQUIRE(wrapped[i] == std::byte(uint8_t(3100 + i)));
}

TEST_CASE("a model whose bytes never change fills the ring once, then refills publish it again")
{
	StreamRig rig(1, DEVEMU_F_STREAM | DEVEMU_F_NEED_KICK, true);
	rig.core.doorbell();
	CHECK(rig.rx().tail == 4096);
	size_t calls = rig.model->produceCalls;
	CHECK(calls >= 1);
	auto first = rig.driverRead(3000);
	rig.core.doorbell();
	CHECK(rig.rx().tail == 3000 + 4096);
	CHECK(rig.model->produceCalls == calls); /* no produce() once the ring came from it */
	/* What the driver reads next is what the ring held: the model's bytes, published again. */
	auto again = rig.driverRead(4096);
	CHECK(std::equal(first.begin(), first.end(), again.begin() + 1096));
	/* Not so for a model that declares nothing: every refill asks it. */
	StreamRig plain;
	plain.core.doorbell();
	size_t plainCalls = plain.model->produceCalls;
	plain.driverRead(3000);
	plain.core.doorbell();
	CHECK(plain.model->produceCalls > plainCalls);
}

TEST_CASE("a model with nothing to produce leaves no kick armed: its notify() refills the FIFO")
{
	StreamRig rig;
	rig.model->budget = 10;
	rig.core.doorbell();
	CHECK(rig.rx().tail == 10);
	CHECK(rig.rx().kick == 0);
	rig.model->budget = 5;
	rig.core.notify(POLLIN);
	CHECK(rig.rx().tail == 15);
}

TEST_CASE("records that straddle the end of the ring are produced and consumed whole")
{
	StreamRig rig(24);
	rig.core.doorbell();
	CHECK(rig.rx().record == 24);
	CHECK(rig.rx().tail == 4096 - 4096 % 24); /* whole records only: 170 of them */
	rig.driverRead(24 * 100);
	rig.core.doorbell();
	uint32_t fill = rig.rx().tail - rig.rxHead;
	CHECK(fill % 24 == 0);
	CHECK(4096 - fill < 24);
	auto all = rig.driverRead(fill);
	for (uint32_t i = 0; i < all.size(); i++)
		REQUIRE(all[i] == std::byte(uint8_t(2400 + i)));

	/* tx: a record across the end reaches consume() in one piece. */
	std::vector<std::byte> filler(4090, std::byte{ 1 });
	rig.driverWrite(filler);
	rig.core.doorbell();
	CHECK(rig.tx().head == 4090 - 4090 % 24);
	rig.model->sink.clear();
	std::vector<std::byte> rec(24 - 4090 % 24 + 24);
	std::iota(reinterpret_cast<uint8_t *>(rec.data()), reinterpret_cast<uint8_t *>(rec.data() + rec.size()), 0);
	rig.driverWrite(rec);
	rig.core.doorbell();
	CHECK(rig.tx().head == rig.txTail);
	CHECK(rig.model->sink.size() == 4090 % 24 + rec.size());
}

TEST_CASE("the transmit FIFO drains into consume(); a full model disarms the kick until it notifies")
{
	StreamRig rig;
	rig.core.doorbell();
	CHECK(rig.tx().watermark == 1);
	CHECK(rig.tx().kick == 1);
	rig.model->sinkRoom = 5;
	rig.driverWrite(test::bytes("hello world"));
	rig.core.doorbell();
	CHECK(test::text(rig.model->sink) == "hello");
	CHECK(rig.tx().head == 5);
	CHECK(rig.tx().kick == 0);
	rig.model->sinkRoom = 100;
	rig.core.notify(POLLOUT);
	CHECK(test::text(rig.model->sink) == "hello world");
	CHECK(rig.tx().head == 11);
	CHECK(rig.tx().kick == 1);
	CHECK(rig.core.stats().bytesIn == 11);
}

TEST_CASE("hostile driver indices: nothing is read or written outside the FIFOs")
{
	StreamRig rig;
	rig.core.doorbell();
	uint32_t tail = rig.rx().tail;
	/* A head past the tail: the core refuses to produce rather than overrun. */
	storeRelease(rig.rx().head, tail + 100000);
	rig.core.doorbell();
	CHECK(rig.rx().tail == tail);
	/* A transmit tail far ahead: nothing is consumed. */
	storeRelease(rig.tx().tail, 1u << 31);
	rig.core.doorbell();
	CHECK(rig.model->sink.empty());
	CHECK(rig.tx().head == 0);
}

TEST_CASE("without DEVEMU_F_STREAM offered, the FIFOs stay unused")
{
	StreamRig rig(1, DEVEMU_F_NEED_KICK);
	rig.core.doorbell();
	CHECK((rig.window.regs().features_accepted & DEVEMU_F_STREAM) == 0);
	CHECK(rig.rx().tail == 0);
	CHECK(rig.model->produceCalls == 0);
}

TEST_CASE("the request path serves a streaming model from the same produce() and consume()")
{
	test::Harness h("zero");
	int fh = h.open();
	auto r = h.read(fh, 5000);
	REQUIRE(r->done);
	CHECK(r->result == 5000);
	CHECK(r->data == std::vector<std::byte>(5000, std::byte{ 0 }));
	auto w = h.write(fh, test::bytes("discarded"));
	REQUIRE(w->done);
	CHECK(w->result == 9);
}

TEST_CASE("the stream FIFOs are laid out after the data slots and checked on attach")
{
	Window w;
	REQUIRE(Window::create({ 8, 4096, 8192, 4096 }, "lay", 1, w) == 0);
	const devemu_regs &r = w.regs();
	CHECK(r.fifo_offset == devemu_window_fifo_offset(8, 4096));
	CHECK(r.fifo_offset % DEVEMU_WINDOW_PAGE == 0);
	CHECK(r.window_size == r.fifo_offset + DEVEMU_WINDOW_PAGE + 8192 + 4096);
	CHECK(reinterpret_cast<uint8_t *>(w.txFifoData().data() + w.txFifoData().size()) ==
	      reinterpret_cast<uint8_t *>(&w.regs()) + r.window_size);
	Window again;
	REQUIRE(Window::attach(UniqueFD(dup(w.fd())), again) == 0);
	CHECK(again.rxFifoSize() == 8192);
	w.regs().rx_fifo_size = 3000;
	Window bad;
	CHECK(Window::attach(UniqueFD(dup(w.fd())), bad) == -EPROTO);
	Window none;
	CHECK(Window::create({ 8, 4096, 1000, 0 }, "bad", 1, none) == -EINVAL);
}

namespace {

/* A loopback of 100 bytes behind a window whose driver made the FIFOs a loop (rx.capacity), as the shim does. */
struct LoopRig {
	LoopRig() : strand(io.get_executor()), core(strand, "loop")
	{
		REQUIRE(Window::create({ 8, 4096, 4096, 4096 }, "loop", 1, window) == 0);
		window.regs().features_offered = DEVEMU_F_STREAM | DEVEMU_F_NEED_KICK;
		window.rxFifo().capacity = 100;
		ModelOptions opts("loop", "loopback", { { "capacity", "100" } });
		auto m = ModelRegistry::builtin().find("loopback")->factory(opts, core);
		std::string error;
		REQUIRE(m->start(error) == 0);
		core.setModel(std::move(m));
		driver = std::make_unique<WindowDriver>(window, [this] { core.doorbell(); });
		/* The driver's requests beside the FIFOs, as the shim's. */
		window.regs().features_offered |= DEVEMU_F_STREAM;
		core.attachWindow(window, [this](uint32_t isr) {
			lastIsr |= isr;
			driver->interrupt(isr);
		});
	}
	/* A request by the driver (a diverted call); its outcome, which the doorbell's pass has filled in. */
	struct Outcome {
		bool done = false;
		int32_t result = 0;
		std::string data;
	};
	std::shared_ptr<Outcome> request(uint8_t opcode, uint32_t fh, std::string_view in = {}, uint32_t len = 0)
	{
		devemu_sqe sqe{};
		sqe.opcode = opcode;
		sqe.fh = fh;
		sqe.len = opcode == DEVEMU_OP_WRITE ? static_cast<uint32_t>(in.size()) : len;
		auto out = std::make_shared<Outcome>();
		driver->submit(sqe, std::as_bytes(std::span(in)), [out, opcode](const devemu_cqe &cqe, auto slot) {
			out->done = true;
			out->result = cqe.result;
			if (opcode == DEVEMU_OP_READ && cqe.result > 0)
				out->data.assign(reinterpret_cast<const char *>(slot.data()),
						 static_cast<size_t>(cqe.result));
		});
		return out;
	}
	/* The driver acts on a discard index the core published (uapi: Loops). */
	void driverTakeDiscard()
	{
		rxHead = window.rxFifo().discard;
		storeRelease(window.rxFifo().head, rxHead);
	}
	/* The driver's count of bytes in flight (uapi: Loops). */
	uint32_t inFlight() const { return txTail - rxHead + loadAcquire(window.rxFifo().adjust); }
	std::string driverRead(uint32_t n)
	{
		std::string out;
		auto data = window.rxFifoData();
		for (uint32_t i = 0; i < n; i++)
			out.push_back(static_cast<char>(data[(rxHead + i) & (data.size() - 1)]));
		rxHead += n;
		storeRelease(window.rxFifo().head, rxHead);
		return out;
	}
	void driverWrite(std::string_view in)
	{
		auto data = window.txFifoData();
		for (size_t i = 0; i < in.size(); i++)
			data[(txTail + i) & (data.size() - 1)] = std::byte(in[i]);
		txTail += static_cast<uint32_t>(in.size());
		storeRelease(window.txFifo().tail, txTail);
	}

	asio::io_context io;
	Strand strand;
	Window window;
	DeviceCore core;
	std::unique_ptr<WindowDriver> driver;
	uint32_t rxHead = 0, txTail = 0;
	uint32_t lastIsr = 0;
};

} // namespace

TEST_CASE("a fault diverts its direction of a loop to requests, which keep the stream's order")
{
	LoopRig rig;
	auto open = rig.request(DEVEMU_OP_OPEN, 0);
	REQUIRE(open->done);
	REQUIRE(open->result >= 0);
	uint32_t fh = static_cast<uint32_t>(open->result);
	rig.driverWrite("abcdef");
	rig.core.doorbell();
	REQUIRE(rig.window.rxFifo().tail == 6);
	CHECK(rig.window.rxFifo().divert == 0);

	/* One failing read: only the receive FIFO is diverted, and only while the fault lasts. */
	auto fault = [](DeviceStats::Op op, int error, std::optional<uint32_t> shortLen, int64_t count) {
		FaultSpec f;
		f.op = op;
		f.error = error;
		f.shortLen = shortLen;
		f.count = count;
		return f;
	};
	rig.core.setFault(fault(DeviceStats::Read, EIO, std::nullopt, 1));
	CHECK(rig.window.rxFifo().divert == 1);
	CHECK(rig.window.txFifo().divert == 0);
	auto failed = rig.request(DEVEMU_OP_READ, fh, {}, 100);
	REQUIRE(failed->done);
	CHECK(failed->result == -EIO);
	CHECK(rig.window.rxFifo().divert == 0);

	/* Short reads by request take the bytes in rx first and hand them back with a discard index. */
	rig.core.setFault(fault(DeviceStats::Read, 0, 2, -1));
	auto first = rig.request(DEVEMU_OP_READ, fh, {}, 100);
	REQUIRE(first->done);
	CHECK(first->data == "ab");
	CHECK(rig.window.rxFifo().discard == 2);
	/* Before the driver acts on it, the next diverted read starts after it all the same. */
	auto second = rig.request(DEVEMU_OP_READ, fh, {}, 100);
	REQUIRE(second->done);
	CHECK(second->data == "cd");
	rig.driverTakeDiscard();
	CHECK(rig.rxHead == 4);
	CHECK(rig.inFlight() == 2);
	CHECK(rig.core.stats().bytesOut == 4); /* read by request, not again when the head passes them */
	rig.core.clearFaults();
	CHECK(rig.window.rxFifo().divert == 0);

	/* A diverted write goes in after what the transmit FIFO holds. */
	rig.core.setFault(fault(DeviceStats::Write, 0, 10, -1));
	CHECK(rig.window.txFifo().divert == 1);
	rig.driverWrite("XY");
	auto write = rig.request(DEVEMU_OP_WRITE, fh, "Z");
	REQUIRE(write->done);
	CHECK(write->result == 1);
	rig.core.doorbell();
	CHECK(rig.inFlight() == 5);
	CHECK(rig.driverRead(5) == "efXYZ");
	CHECK(rig.inFlight() == 0);
	CHECK(rig.core.stats().bytesOut == 9);
}

TEST_CASE("the calls the driver served from the FIFOs and its waiting callers count in the statistics")
{
	LoopRig rig;
	uint64_t reads = rig.core.stats().requests[DeviceStats::Read];
	uint64_t writes = rig.core.stats().requests[DeviceStats::Write];
	storeRelease(rig.window.rxFifo().calls, 3);
	storeRelease(rig.window.txFifo().calls, 5);
	CHECK(rig.core.stats().requests[DeviceStats::Read] == reads + 3);
	CHECK(rig.core.stats().requests[DeviceStats::Write] == writes + 5);
	/* Counted once: a second look adds only what is new. */
	storeRelease(rig.window.rxFifo().calls, 4);
	CHECK(rig.core.stats().requests[DeviceStats::Read] == reads + 4);
	CHECK(rig.core.waitingCalls() == 0);
	storeRelease(rig.window.rxFifo().waiters, 2);
	storeRelease(rig.window.txFifo().waiters, 1);
	CHECK(rig.core.waitingCalls() == 3);
	/* A driver's wild count is clamped, not trusted. */
	storeRelease(rig.window.rxFifo().waiters, 0xffffffffu);
	CHECK(rig.core.waitingCalls() == (1u << 20) + 1);
}

TEST_CASE("a loop: written bytes come back through the FIFOs, and only bytes from elsewhere move adjust")
{
	LoopRig rig;
	CHECK(rig.window.rxFifo().adjust == 0);
	rig.driverWrite("written through tx");
	CHECK(rig.inFlight() == 18);
	rig.core.doorbell();
	CHECK(rig.window.rxFifo().tail == 18);
	CHECK(rig.window.txFifo().head == 18);
	CHECK(rig.window.rxFifo().adjust == 0); /* tx -> model -> rx leaves the count alone */
	CHECK(rig.inFlight() == 18);
	rig.lastIsr = 0;
	std::string reply;
	REQUIRE(rig.core.inject({ "data", "hello" }, reply) == 0);
	CHECK(rig.window.rxFifo().adjust == 5); /* injected: in flight without a write */
	CHECK((rig.lastIsr & DEVEMU_ISR_STREAM) != 0);
	CHECK(rig.inFlight() == 23);
	CHECK(rig.driverRead(23) == "written through txhello");
	CHECK(rig.inFlight() == 0);
}

TEST_CASE("a loop's clear takes the transmit FIFO in and tells the driver to drop the receive FIFO")
{
	LoopRig rig;
	rig.driverWrite("0123456789");
	rig.core.doorbell();
	CHECK(rig.window.rxFifo().tail == 10);
	rig.driverWrite("abc"); /* posted, the core not woken yet */
	rig.lastIsr = 0;
	std::string reply;
	REQUIRE(rig.core.inject({ "clear" }, reply) == 0);
	/* 10 bytes dropped from rx, abc taken from tx into the model, which drops it with its own. */
	CHECK(reply == "discarded 13 bytes");
	CHECK(rig.window.txFifo().head == 13);
	CHECK(rig.window.rxFifo().discard == rig.window.rxFifo().tail);
	CHECK((rig.lastIsr & DEVEMU_ISR_STREAM) != 0);
	/* The driver moves its head to the discard index: nothing is in flight any more. */
	rig.rxHead = rig.window.rxFifo().discard;
	storeRelease(rig.window.rxFifo().head, rig.rxHead);
	CHECK(rig.inFlight() == 0);
	CHECK(rig.core.stats().bytesOut == 0); /* dropped, not read */
}

TEST_CASE("a loop's request path keeps the capacity and writes up to it atomic")
{
	test::Harness h("loopback", { { "capacity", "10" } });
	int fh = h.open();
	CHECK(h.write(fh, test::bytes("12345678"), true)->result == 8);
	CHECK(h.write(fh, test::bytes("abc"), true)->result == -EAGAIN); /* 3 into 2 free: all or nothing */
	CHECK(h.write(fh, test::bytes("ab"), true)->result == 2);
	CHECK(test::text(h.read(fh, 4, true)->data) == "1234");
	/* Larger than the capacity: what fits. */
	CHECK(h.write(fh, test::bytes("ABCDEFGHIJKLMNOP"), true)->result == 4);
	CHECK(test::text(h.read(fh, 100, true)->data) == "5678abABCD");
}
