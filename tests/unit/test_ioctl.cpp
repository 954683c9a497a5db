// SPDX-License-Identifier: MIT
// Unit tests of ioctl marshalling: size-encoded arguments, retry rounds for pointer-holding ones, restricted drivers.
#include "harness.h"
#include "transports/ioctl_retry.h"

#include <sys/ioctl.h>

using namespace devemu;

namespace {

/* A pointer-holding ioctl shaped like I2C_RDWR: arg -> {msgs, n}; msgs -> {buf, len, read}. */
struct XferMsg {
	uint64_t buf;
	uint32_t len;
	uint32_t read;
};
struct XferSet {
	uint64_t msgs;
	uint32_t count;
	uint32_t pad;
};
constexpr uint32_t kXfer = _IO(0xEE, 1); /* no size encoded, like I2C_RDWR */
constexpr uint32_t kSetValue = _IOW(0xEE, 2, uint32_t);
constexpr uint32_t kHuge = _IO(0xEE, 3);

class ChasingModel final : public Model
{
public:
	IoctlResult ioctl(OpenFile &, IoctlCall &call) override
	{
		switch (call.cmd()) {
		case kSetValue: {
			auto v = call.argIn<uint32_t>();
			if (!v)
				return call.done();
			value_ = *v;
			return call.done(0);
		}
		case kXfer: {
			auto set = call.argIn<XferSet>();
			if (!set)
				return call.done();
			if (set->count > 8)
				return IoctlResult::error(-EINVAL);
			auto raw = call.readUser(set->msgs, set->count * sizeof(XferMsg));
			if (!raw)
				return call.done();
			std::vector<XferMsg> msgs(set->count);
			std::memcpy(msgs.data(), raw->data(), raw->size());
			/* Ask for every buffer in one round: inputs, then room for the outputs. */
			std::vector<std::span<const std::byte>> writes;
			for (const auto &m : msgs)
				if (!m.read) {
					if (auto b = call.readUser(m.buf, m.len))
						writes.push_back(*b);
				}
			uint32_t sum = sum_;
			for (auto w : writes)
				for (auto b : w)
					sum += static_cast<uint8_t>(b);
			for (const auto &m : msgs)
				if (m.read) {
					std::vector<std::byte> out(m.len, std::byte(sum & 0xff));
					call.writeUser(m.buf, std::span<const std::byte>(out));
				}
			/* No state changes until the round carries everything. */
			if (call.needsRetry())
				return call.done();
			sum_ = sum;
			return call.done(static_cast<int>(set->count));
		}
		case kHuge:
			call.readUser(call.arg(), 1 << 24);
			return call.done();
		}
		return IoctlResult::error(-ENOTTY);
	}
	uint32_t poll(const OpenFile &) override { return 0; }
	uint32_t value_ = 0;
	uint32_t sum_ = 0;
};

struct RegisterChasing {
	RegisterChasing()
	{
		ModelRegistry::builtin().add({ "test-chasing", "test", "", [](ModelOptions &, DeviceContext &) {
						      return std::unique_ptr<Model>(new ChasingModel);
					      } });
	}
} registerChasing;

/* Answers which kind of caller each request came from: 32 (a compat task) or 64. */
constexpr uint32_t kWhoCalls = _IOR(0xEE, 4, uint32_t);

class CompatModel final : public Model
{
public:
	int open(OpenFile &f) override
	{
		openedCompat_ = f.compat;
		return 0;
	}
	ssize_t read(OpenFile &f, std::span<std::byte> out) override
	{
		out[0] = std::byte(f.compat ? '3' : '6');
		return 1;
	}
	ssize_t write(OpenFile &f, std::span<const std::byte> in) override
	{
		wroteCompat_ = f.compat;
		return static_cast<ssize_t>(in.size());
	}
	IoctlResult ioctl(OpenFile &, IoctlCall &call) override
	{
		if (call.cmd() != kWhoCalls)
			return IoctlResult::error(-ENOTTY);
		return call.replyArg(call.compat() ? uint32_t(32) : uint32_t(64));
	}
	uint32_t poll(const OpenFile &) override { return 0; }
	bool openedCompat_ = false;
	bool wroteCompat_ = false;
};

struct RegisterCompat {
	RegisterCompat()
	{
		ModelRegistry::builtin().add({ "test-compat", "test", "", [](ModelOptions &, DeviceContext &) {
						      return std::unique_ptr<Model>(new CompatModel);
					      } });
	}
} registerCompat;

} // namespace

TEST_CASE("a size-encoded ioctl takes one retry round on an unrestricted driver")
{
	test::Harness h("loopback");
	int fh = h.open();
	h.write(fh, test::bytes("12345"));
	test::FakeMemory mem;
	mem.regions[0x1000].resize(4);
	int rounds = 0;
	CHECK(h.ioctl(fh, FIONREAD, 0x1000, mem, &rounds) == 0);
	CHECK(rounds == 2);
	int value;
	std::memcpy(&value, mem.regions[0x1000].data(), 4);
	CHECK(value == 5);
}

TEST_CASE("the devemu counters ioctl reports bytes in and out and opens")
{
	test::Harness h("loopback");
	int fh = h.open();
	h.open();
	h.write(fh, test::bytes("abcdef"));
	h.read(fh, 4);
	test::FakeMemory mem;
	mem.regions[0x2000].resize(sizeof(devemu_counters));
	REQUIRE(h.ioctl(fh, DEVEMU_IOC_COUNTERS, 0x2000, mem) == 0);
	devemu_counters c;
	std::memcpy(&c, mem.regions[0x2000].data(), sizeof(c));
	CHECK(c.bytes_in == 6);
	CHECK(c.bytes_out == 4);
	CHECK(c.opens == 2);
	CHECK(c.dropped == 0);
}

TEST_CASE("a pointer-chasing ioctl runs one round per level of indirection and scatters the output")
{
	test::Harness h("test-chasing");
	int fh = h.open();
	test::FakeMemory mem;
	XferMsg msgs[2] = { { 0x5000, 3, 0 }, { 0x6000, 4, 1 } };
	XferSet set{ 0x4000, 2, 0 };
	auto put = [&](uint64_t at, const void *p, size_t n) {
		auto &r = mem.regions[at];
		r.resize(n);
		std::memcpy(r.data(), p, n);
	};
	put(0x3000, &set, sizeof(set));
	put(0x4000, msgs, sizeof(msgs));
	uint8_t wbuf[3] = { 1, 2, 3 };
	put(0x5000, wbuf, 3);
	mem.regions[0x6000].resize(4);
	int rounds = 0;
	CHECK(h.ioctl(fh, kXfer, 0x3000, mem, &rounds) == 2);
	CHECK(rounds == 4); /* nothing, the set, the msgs, the buffers */
	for (auto b : mem.regions[0x6000])
		CHECK(b == std::byte{ 6 });
}

TEST_CASE("an invalid caller pointer surfaces as -EFAULT from the driver, and the device keeps serving")
{
	test::Harness h("test-chasing");
	int fh = h.open();
	test::FakeMemory mem;
	XferSet set{ 0xdead0000, 1, 0 }; /* msgs point nowhere */
	mem.regions[0x3000].resize(sizeof(set));
	std::memcpy(mem.regions[0x3000].data(), &set, sizeof(set));
	CHECK(h.ioctl(fh, kXfer, 0x3000, mem) == -EFAULT);
	CHECK(h.ioctl(fh, kXfer, 0x9999, mem) == -EFAULT);
	mem.regions[0x7000].resize(4, std::byte{ 9 });
	CHECK(h.ioctl(fh, kSetValue, 0x7000, mem) == 0);
}

TEST_CASE("unknown ioctls give -ENOTTY without asking for memory")
{
	test::Harness h("loopback");
	int fh = h.open();
	test::FakeMemory mem;
	int rounds = 0;
	CHECK(h.ioctl(fh, _IOR(0x42, 7, uint64_t), 0xbad, mem, &rounds) == -ENOTTY);
	CHECK(rounds == 1);
}

TEST_CASE("a request for more caller memory than a slot holds is refused with -EINVAL")
{
	test::Harness h("test-chasing");
	int fh = h.open();
	test::FakeMemory mem;
	CHECK(h.ioctl(fh, kHuge, 0x1000, mem) == -EINVAL);
}

TEST_CASE("a restricted driver (FUSE) carries size-encoded ioctls in one round and refuses the rest with ENOTTY")
{
	test::Harness h("loopback");
	int fh = h.open();
	h.write(fh, test::bytes("xyz"));
	auto nread = h.restrictedIoctl(fh, DEVEMU_IOC_NREAD, {}, 4);
	REQUIRE(nread->done);
	CHECK(nread->result == 0);
	CHECK(nread->aux == 4);
	uint32_t n;
	std::memcpy(&n, nread->data.data(), 4);
	CHECK(n == 3);
	/* FIONREAD has no size encoded: a FUSE driver brings no room for the int. */
	auto fionread = h.restrictedIoctl(fh, FIONREAD, {}, 0);
	REQUIRE(fionread->done);
	CHECK(fionread->result == -ENOTTY);
	CHECK((fionread->flags & DEVEMU_CQE_F_IOCTL_RETRY) == 0);
}

TEST_CASE("a restricted _IOW ioctl delivers its input")
{
	test::Harness h("test-chasing");
	int fh = h.open();
	uint32_t v = 77;
	auto o = h.restrictedIoctl(fh, kSetValue, std::as_bytes(std::span(&v, 1)), 0);
	REQUIRE(o->done);
	CHECK(o->result == 0);
	CHECK(static_cast<ChasingModel *>(h.core_->model())->value_ == 77);
}

TEST_CASE("DEVEMU_SQE_F_COMPAT tells the model, request by request, that the caller is a 32-bit task")
{
	test::Harness h("test-compat");
	auto &model = dynamic_cast<CompatModel &>(*h.core_->model());
	devemu_sqe sqe{};
	sqe.opcode = DEVEMU_OP_OPEN;
	sqe.flags = DEVEMU_SQE_F_COMPAT;
	auto opened = h.submit(sqe);
	REQUIRE(opened->result == 0);
	CHECK(model.openedCompat_);

	/* One file, shared by a 32-bit and a 64-bit process: each request says which one calls. */
	sqe = {};
	sqe.opcode = DEVEMU_OP_READ;
	sqe.len = 1;
	sqe.flags = DEVEMU_SQE_F_COMPAT;
	CHECK(test::text(h.submit(sqe)->data) == "3");
	sqe.flags = 0;
	CHECK(test::text(h.submit(sqe)->data) == "6");

	sqe = {};
	sqe.opcode = DEVEMU_OP_WRITE;
	sqe.len = 1;
	sqe.flags = DEVEMU_SQE_F_COMPAT;
	CHECK(h.submit(sqe, test::bytes("w"))->result == 1);
	CHECK(model.wroteCompat_);
	sqe.flags = 0;
	CHECK(h.submit(sqe, test::bytes("w"))->result == 1);
	CHECK_FALSE(model.wroteCompat_);

	for (bool compat : { true, false }) {
		sqe = {};
		sqe.opcode = DEVEMU_OP_IOCTL;
		sqe.ioctl_cmd = kWhoCalls;
		sqe.ioctl_arg = 0x1000;
		sqe.out_len = sizeof(uint32_t);
		sqe.flags = DEVEMU_SQE_F_IOCTL_RESTRICTED | (compat ? DEVEMU_SQE_F_COMPAT : 0);
		auto o = h.submit(sqe);
		REQUIRE(o->result == 0);
		REQUIRE(o->aux == sizeof(uint32_t));
		uint32_t bits;
		std::memcpy(&bits, o->data.data(), sizeof(bits));
		CHECK(bits == (compat ? 32u : 64u));
	}
}

namespace {

/* A data slot of exactly size bytes holding a retry header and the ranges given. */
std::vector<std::byte> retrySlot(size_t size, uint32_t inCount, uint32_t outCount, std::vector<devemu_iovec> ranges)
{
	std::vector<std::byte> slot(size);
	devemu_ioctl_retry hdr{ inCount, outCount };
	std::memcpy(slot.data(), &hdr, sizeof(hdr));
	for (size_t i = 0; i < ranges.size() && sizeof(hdr) + (i + 1) * sizeof(devemu_iovec) <= size; i++)
		std::memcpy(slot.data() + sizeof(hdr) + i * sizeof(devemu_iovec), &ranges[i], sizeof(devemu_iovec));
	return slot;
}

} // namespace

TEST_CASE("a driver decodes a core's retry list into the caller ranges it fetches")
{
	auto slot = retrySlot(4096, 1, 1, { { 0x1000, 8 }, { 0x2000, 16 } });
	IoctlRetryList list;
	REQUIRE(decodeIoctlRetry(slot, list) == 0);
	CHECK(list.inCount == 1);
	CHECK(list.outCount == 1);
	REQUIRE(list.iov.size() == 2);
	CHECK(reinterpret_cast<uintptr_t>(list.iov[0].iov_base) == 0x1000);
	CHECK(list.iov[1].iov_len == 16);
}

TEST_CASE("a driver refuses a retry list from a hostile core that is too long or does not fit in its slot")
{
	IoctlRetryList list;
	/* Three ranges announced, room for two: the driver must not read past the slot. */
	auto short_slot =
		retrySlot(sizeof(devemu_ioctl_retry) + 2 * sizeof(devemu_iovec), 2, 1, { { 1, 1 }, { 2, 2 } });
	CHECK(decodeIoctlRetry(short_slot, list) == -EINVAL);
	auto too_many = retrySlot(64 * 1024, DEVEMU_IOCTL_MAX_IOV, 1, {});
	CHECK(decodeIoctlRetry(too_many, list) == -EINVAL);
	/* Counts whose sum wraps 32 bits. */
	auto wrapping = retrySlot(4096, 0xffffffffu, 2, {});
	CHECK(decodeIoctlRetry(wrapping, list) == -EINVAL);
	std::vector<std::byte> no_header(4);
	CHECK(decodeIoctlRetry(no_header, list) == -EINVAL);
}
