// SPDX-License-Identifier: MIT
// Unit tests of the device window: layout, registers, entry encoding and ring indices.
#include "harness.h"

#include "devemu/window.h"

using namespace devemu;

TEST_CASE("window layout is page-aligned and published in the registers")
{
	Window w;
	REQUIRE(Window::create({ 64, 128 * 1024 }, "lay", 7, w) == 0);
	const devemu_regs &r = w.regs();
	CHECK(r.magic == DEVEMU_MAGIC);
	CHECK(r.abi_version == DEVEMU_ABI_VERSION);
	CHECK(r.device_id == 7);
	CHECK(std::string(r.name) == "lay");
	CHECK(r.sq_offset == DEVEMU_RINGS_OFFSET);
	CHECK(r.cq_offset % DEVEMU_WINDOW_PAGE == 0);
	CHECK(r.data_offset % DEVEMU_WINDOW_PAGE == 0);
	CHECK(r.cq_offset >= r.sq_offset + DEVEMU_RING_ENTRIES_OFFSET + 2 * 64 * sizeof(devemu_sqe));
	CHECK(r.data_offset >= r.cq_offset + DEVEMU_RING_ENTRIES_OFFSET + 64 * sizeof(devemu_cqe));
	CHECK(r.window_size == r.data_offset + 64ULL * 128 * 1024);
	/* Slots do not overlap and the last one ends at the window's end. */
	CHECK(w.slot(1).data() - w.slot(0).data() == 128 * 1024);
	CHECK(reinterpret_cast<uint8_t *>(w.slot(63).data() + w.slot(63).size()) ==
	      reinterpret_cast<uint8_t *>(&w.regs()) + r.window_size);
}

TEST_CASE("bad geometries are refused")
{
	Window w;
	CHECK(Window::create({ 48, 4096 }, "x", 0, w) == -EINVAL); /* not a power of two */
	CHECK(Window::create({ 512, 4096 }, "x", 0, w) == -EINVAL); /* deeper than the ABI allows */
	CHECK(Window::create({ 64, 100 }, "x", 0, w) == -EINVAL); /* slot smaller than a page */
	CHECK(Window::create({ 64, 4096 }, std::string(80, 'n'), 0, w) == -EINVAL);
}

TEST_CASE("a second mapping of the window fd sees the same registers (what a restarted daemon does)")
{
	Window w;
	REQUIRE(Window::create({ 16, 8192 }, "remap", 3, w) == 0);
	w.regs().isr = 42;
	Window again;
	REQUIRE(Window::attach(UniqueFD(dup(w.fd())), again) == 0);
	CHECK(again.regs().isr == 42);
	CHECK(again.queueDepth() == 16);
	CHECK(again.slotSize() == 8192);
	again.slot(5)[0] = std::byte{ 0x5a };
	CHECK(w.slot(5)[0] == std::byte{ 0x5a });
}

TEST_CASE("attaching refuses a window with a bad magic or inconsistent layout")
{
	Window w;
	REQUIRE(Window::create({ 16, 8192 }, "bad", 0, w) == 0);
	w.regs().data_offset += 4096;
	Window again;
	CHECK(Window::attach(UniqueFD(dup(w.fd())), again) == -EPROTO);
	w.regs().data_offset -= 4096;
	w.regs().magic = 0;
	CHECK(Window::attach(UniqueFD(dup(w.fd())), again) == -EPROTO);
}

TEST_CASE("entry encoding matches the documented offsets")
{
	CHECK(offsetof(devemu_sqe, opcode) == 0x00);
	CHECK(offsetof(devemu_sqe, tag) == 0x04);
	CHECK(offsetof(devemu_sqe, epoch) == 0x08);
	CHECK(offsetof(devemu_sqe, fh) == 0x0c);
	CHECK(offsetof(devemu_sqe, len) == 0x10);
	CHECK(offsetof(devemu_sqe, out_len) == 0x14);
	CHECK(offsetof(devemu_sqe, ioctl_cmd) == 0x18);
	CHECK(offsetof(devemu_sqe, ioctl_arg) == 0x20);
	CHECK(offsetof(devemu_sqe, pid) == 0x28);
	CHECK(offsetof(devemu_cqe, result) == 0x04);
	CHECK(offsetof(devemu_cqe, aux) == 0x08);
	CHECK(offsetof(devemu_cqe, epoch) == 0x0c);
	CHECK(offsetof(devemu_cqe, flags) == 0x0e);
	CHECK(offsetof(devemu_regs, status) == 0x48);
	CHECK(offsetof(devemu_regs, reserved0) == 0x50);
	CHECK(offsetof(devemu_regs, isr) == 0x54);
	CHECK(offsetof(devemu_regs, reserved1) == 0x58);
	CHECK(offsetof(devemu_shadow, status) == 0x10);
	CHECK(DEVEMU_IOC_COUNTERS == 0x8020de01u);
}

TEST_CASE("ring indices wrap around the 32-bit counter")
{
	test::Harness h("loopback");
	/* Start the free-running indices just below the wrap. */
	h.window_.sq().head = h.window_.sq().tail = 0xfffffff0u;
	h.window_.cq().head = h.window_.cq().tail = 0xfffffff0u;
	int fh = h.open();
	REQUIRE(fh >= 0);
	for (int i = 0; i < 100; i++) {
		auto msg = test::bytes("m" + std::to_string(i));
		REQUIRE(h.write(fh, msg)->result == static_cast<int>(msg.size()));
		auto r = h.read(fh, 64);
		REQUIRE(r->done);
		CHECK(test::text(r->data) == "m" + std::to_string(i));
	}
	CHECK(h.window_.sq().head < 0x100u); /* wrapped */
}
