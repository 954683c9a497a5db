// SPDX-License-Identifier: MIT
// Test harness: a DeviceCore reached through a LocalWindow's driver, with a fake caller memory for ioctl retry rounds.
#pragma once

#include "devemu/device_core.h"
#include "devemu/local_window.h"
#include "devemu/model_registry.h"

#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace devemu::test {

/* What a request's completion said. */
struct Outcome {
	bool done = false;
	int32_t result = 0;
	uint32_t aux = 0;
	uint16_t flags = 0;
	std::vector<std::byte> data;
};

inline std::vector<std::byte> bytes(std::string_view s)
{
	auto b = std::as_bytes(std::span(s.data(), s.size()));
	return { b.begin(), b.end() };
}
inline std::string text(const std::vector<std::byte> &b)
{
	return { reinterpret_cast<const char *>(b.data()), b.size() };
}

/* A caller's address space: named byte ranges at fake addresses, as the kernel would copy them. */
struct FakeMemory {
	std::map<uint64_t, std::vector<std::byte>> regions;
	bool read(uint64_t addr, uint64_t len, std::vector<std::byte> &out) const
	{
		for (const auto &[base, data] : regions)
			if (addr >= base && addr + len <= base + data.size()) {
				out.insert(out.end(), data.begin() + static_cast<ptrdiff_t>(addr - base),
					   data.begin() + static_cast<ptrdiff_t>(addr - base + len));
				return true;
			}
		return false;
	}
	bool write(uint64_t addr, std::span<const std::byte> in)
	{
		for (auto &[base, data] : regions)
			if (addr >= base && addr + in.size() <= base + data.size()) {
				std::copy(in.begin(), in.end(), data.begin() + static_cast<ptrdiff_t>(addr - base));
				return true;
			}
		return false;
	}
};

class Harness
{
public:
	explicit Harness(std::string model, ModelOptions::Pairs options = {}, WindowGeometry geometry = {})
		: strand_(io_.get_executor()), core_(std::make_unique<DeviceCore>(strand_, "test")),
		  local_(*core_, "test", geometry), window_(local_.window()), driver_(&local_.driver())
	{
		ModelOptions opts("test", model, std::move(options));
		auto model_ = ModelRegistry::builtin().find(model)->factory(opts, *core_);
		REQUIRE_MESSAGE(opts.error().empty(), opts.error());
		std::string startError;
		REQUIRE_MESSAGE(model_->start(startError) == 0, startError);
		core_->setModel(std::move(model_));
	}

	/* From now on every request comes from a 32-bit (compat) caller, or not. */
	void setCompat(bool compat) { compat_ = compat; }
	/* From now on every request reports these caller capabilities (DEVEMU_SQE_F_CAPS; bit N: capability N), or
	 * none (nullopt: the core asks /proc about sqe.pid). Every capability by default: a privileged caller. */
	void setCallerCaps(std::optional<uint64_t> caps) { callerCaps_ = caps; }

	/* Submits and returns a handle to the outcome (filled when the completion runs). */
	std::shared_ptr<Outcome> submit(devemu_sqe sqe, std::span<const std::byte> data = {},
					WindowDriver::RequestId *id = nullptr)
	{
		if (compat_)
			sqe.flags |= DEVEMU_SQE_F_COMPAT;
		if (callerCaps_ && sqe.opcode != DEVEMU_OP_CANCEL) {
			sqe.flags |= DEVEMU_SQE_F_CAPS;
			sqe.caps = *callerCaps_;
		}
		auto out = std::make_shared<Outcome>();
		auto rid = driver_->submit(sqe, data, [out](const devemu_cqe &cqe, std::span<const std::byte> slot) {
			out->done = true;
			out->result = cqe.result;
			out->aux = cqe.aux;
			out->flags = cqe.flags;
			/* READ returns result bytes, IOCTL aux bytes, a retry its whole list. */
			size_t n = (cqe.flags & DEVEMU_CQE_F_IOCTL_RETRY)
					   ? slot.size()
					   : std::max<size_t>(cqe.result > 0 ? static_cast<size_t>(cqe.result) : 0,
							      cqe.aux);
			out->data.assign(slot.begin(), slot.begin() + static_cast<ptrdiff_t>(std::min(n, slot.size())));
		});
		if (id)
			*id = rid;
		return out;
	}

	int open(uint32_t flags = 0)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_OPEN;
		sqe.open_flags = flags;
		auto o = submit(sqe);
		REQUIRE(o->done);
		return o->result;
	}
	std::shared_ptr<Outcome> read(uint32_t fh, uint32_t len, bool nonblock = false,
				      WindowDriver::RequestId *id = nullptr)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_READ;
		sqe.fh = fh;
		sqe.len = len;
		sqe.flags = nonblock ? DEVEMU_SQE_F_NONBLOCK : 0;
		return submit(sqe, {}, id);
	}
	std::shared_ptr<Outcome> write(uint32_t fh, std::span<const std::byte> data, bool nonblock = false,
				       WindowDriver::RequestId *id = nullptr)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_WRITE;
		sqe.fh = fh;
		sqe.len = static_cast<uint32_t>(data.size());
		sqe.flags = nonblock ? DEVEMU_SQE_F_NONBLOCK : 0;
		return submit(sqe, data, id);
	}
	uint32_t poll(uint32_t fh, uint32_t events = 0xffff)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_POLL;
		sqe.fh = fh;
		sqe.out_len = events;
		auto o = submit(sqe);
		REQUIRE(o->done);
		return o->aux;
	}
	void release(uint32_t fh)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_RELEASE;
		sqe.fh = fh;
		REQUIRE(submit(sqe)->result == 0);
	}

	/*
	 * An unrestricted ioctl as CUSE's kernel side runs it: first round with no
	 * data, then as many retry rounds as the model asks for, copying caller
	 * memory in and the output back out. Returns the result; rounds counts them.
	 */
	int ioctl(uint32_t fh, uint32_t cmd, uint64_t arg, FakeMemory &mem, int *rounds = nullptr)
	{
		std::vector<devemu_iovec> outIov;
		std::vector<std::byte> in;
		uint32_t outLen = 0;
		for (int round = 1; round <= 16; round++) {
			devemu_sqe sqe{};
			sqe.opcode = DEVEMU_OP_IOCTL;
			sqe.fh = fh;
			sqe.ioctl_cmd = cmd;
			sqe.ioctl_arg = arg;
			sqe.len = static_cast<uint32_t>(in.size());
			sqe.out_len = outLen;
			auto o = submit(sqe, in);
			REQUIRE(o->done);
			if (rounds)
				*rounds = round;
			if (!(o->flags & DEVEMU_CQE_F_IOCTL_RETRY)) {
				if (o->result < 0)
					return o->result;
				size_t off = 0;
				for (const auto &v : outIov) {
					size_t n = std::min<size_t>(v.len, o->aux > off ? o->aux - off : 0);
					if (!mem.write(v.base, std::span(o->data).subspan(off, n)))
						return -EFAULT;
					off += n;
				}
				return o->result;
			}
			devemu_ioctl_retry hdr;
			std::memcpy(&hdr, o->data.data(), sizeof(hdr));
			std::vector<devemu_iovec> iov(hdr.in_count + hdr.out_count);
			std::memcpy(iov.data(), o->data.data() + sizeof(hdr), iov.size() * sizeof(devemu_iovec));
			in.clear();
			for (uint32_t i = 0; i < hdr.in_count; i++)
				if (!mem.read(iov[i].base, iov[i].len, in))
					return -EFAULT;
			outIov.assign(iov.begin() + hdr.in_count, iov.end());
			outLen = 0;
			for (const auto &v : outIov)
				outLen += static_cast<uint32_t>(v.len);
		}
		FAIL("ioctl did not converge");
		return -EIO;
	}

	/* Restricted (FUSE-style) ioctl: exactly _IOC_SIZE bytes, no retry. */
	std::shared_ptr<Outcome> restrictedIoctl(uint32_t fh, uint32_t cmd, std::span<const std::byte> in,
						 uint32_t outLen)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_IOCTL;
		sqe.fh = fh;
		sqe.ioctl_cmd = cmd;
		sqe.ioctl_arg = 0x1000;
		sqe.len = static_cast<uint32_t>(in.size());
		sqe.out_len = outLen;
		sqe.flags = DEVEMU_SQE_F_IOCTL_RESTRICTED;
		return submit(sqe, in);
	}

	void runTimers() { io_.poll(); }

	asio::io_context io_;
	bool compat_ = false;
	std::optional<uint64_t> callerCaps_ = ~uint64_t(0);
	Strand strand_;
	std::unique_ptr<DeviceCore> core_;
	LocalWindow local_; /* declared after core_: detached before the core goes */
	Window &window_;
	WindowDriver *driver_; /* a test may point it at another window's driver */
};

/* A file in a private temporary directory, removed with it. */
struct TempFile {
	explicit TempFile(std::string_view text = {}, const char *name = "t.trace")
	{
		char tmpl[] = "/tmp/devemu-replay-XXXXXX";
		REQUIRE(mkdtemp(tmpl));
		dir = tmpl;
		path = dir + "/" + name;
		if (!text.empty())
			std::ofstream(path) << text;
	}
	~TempFile()
	{
		unlink(path.c_str());
		rmdir(dir.c_str());
	}
	std::string dir, path;
};

} // namespace devemu::test
