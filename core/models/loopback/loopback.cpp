// SPDX-License-Identifier: MIT
// loopback: a bounded FIFO; what is written comes back on read, in order.
#include "devemu/inject_text.h"
#include "devemu/inject_verbs.h"
#include "devemu/model_registry.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <poll.h>
#include <sys/ioctl.h>

namespace devemu {

namespace {

class LoopbackModel final : public Model
{
public:
	LoopbackModel(DeviceContext &ctx, size_t capacity, bool dropWhenFull)
		: ctx_(ctx), capacity_(capacity), dropWhenFull_(dropWhenFull)
	{}

	int start(std::string &) override
	{
		buf_.resize(capacity_);
		return 0;
	}

	/* read() and write() serve when_full=drop, which does not stream. */
	ssize_t read(OpenFile &, std::span<std::byte> out) override
	{
		size_t n = produce(out);
		return n ? static_cast<ssize_t>(n) : -EAGAIN;
	}

	ssize_t write(OpenFile &, std::span<const std::byte> in) override
	{
		size_t space = buf_.size() - size_;
		size_t n;
		if (dropWhenFull_) {
			/* Like a UART overrun: keep what fits, count the rest. */
			n = std::min(in.size(), space);
			dropped_ += in.size() - n;
		} else if (in.size() <= buf_.size()) {
			/* A write that fits the FIFO at all is atomic, so concurrent writers never interleave. */
			if (in.size() > space)
				return -EAGAIN;
			n = in.size();
		} else {
			if (space == 0)
				return -EAGAIN;
			n = space;
		}
		push(in.first(n));
		if (n)
			ctx_.notify(POLLIN);
		return static_cast<ssize_t>(dropWhenFull_ ? in.size() : n);
	}

	/*
	 * Blocking loopbacks stream as a loop: the kernel shim serves reads and writes from its
	 * FIFOs and counts the capacity across them (when_full=drop keeps the request path: its
	 * drops happen at write time, against what the FIFOs hold).
	 */
	StreamSpec stream() const override
	{
		if (dropWhenFull_)
			return {};
		StreamSpec s;
		s.rx = s.tx = true;
		s.loopCapacity = static_cast<uint32_t>(capacity_);
		return s;
	}

	size_t produce(std::span<std::byte> out) override
	{
		size_t n = std::min(out.size(), size_);
		size_t first = std::min(n, buf_.size() - head_);
		std::copy_n(buf_.begin() + static_cast<ptrdiff_t>(head_), first, out.begin());
		std::copy_n(buf_.begin(), n - first, out.begin() + static_cast<ptrdiff_t>(first));
		head_ = (head_ + n) % buf_.size();
		size_ -= n;
		if (n)
			ctx_.notify(POLLOUT);
		return n;
	}

	/* The core keeps the loop's capacity and atomic writes; this takes what physically fits. */
	size_t consume(std::span<const std::byte> in) override
	{
		size_t n = std::min(in.size(), buf_.size() - size_);
		push(in.first(n));
		if (n)
			ctx_.notify(POLLIN);
		return n;
	}

	size_t buffered() const override { return size_; }

	IoctlResult ioctl(OpenFile &, IoctlCall &call) override
	{
		switch (call.cmd()) {
		case FIONREAD:
			return call.replyArg(static_cast<int>(size_));
		default:
			return IoctlResult::error(-ENOTTY);
		}
	}

	uint32_t poll(const OpenFile &) override
	{
		uint32_t mask = 0;
		if (size_)
			mask |= POLLIN | POLLRDNORM;
		if (size_ < buf_.size())
			mask |= POLLOUT | POLLWRNORM;
		return mask;
	}

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		return runInjectVerb(*this, kVerbs, args, reply);
	}

	static const InjectVerb<LoopbackModel> kVerbs[3];

	uint32_t readable(const OpenFile &) override { return static_cast<uint32_t>(size_); }
	uint32_t writable(const OpenFile &) override { return static_cast<uint32_t>(buf_.size() - size_); }
	uint64_t dropped() const override { return dropped_; }

private:
	/* data TEXT, hex BYTES */
	int injectBytes(const std::vector<std::string> &args, std::string &reply)
	{
		std::vector<uint8_t> bytes;
		if (!parseInjectBytes(args, bytes, reply))
			return -EINVAL;
		/* Injected bytes arrive as if a writer sent them, but never block: what does not fit is dropped. */
		size_t n = std::min(bytes.size(), buf_.size() - size_);
		push(std::as_bytes(std::span(bytes)).first(n));
		dropped_ += bytes.size() - n;
		if (n)
			ctx_.notify(POLLIN);
		reply = fmt::format("injected {} bytes{}", n,
				    n < bytes.size() ? fmt::format(", dropped {} (FIFO full)", bytes.size() - n) : "");
		return 0;
	}

	int injectClear(const std::vector<std::string> &, std::string &reply)
	{
		/* On the kernel shim, what waits in its FIFOs too. */
		size_t fromFifos = ctx_.discardStream();
		reply = fmt::format("discarded {} bytes", size_ + fromFifos);
		head_ = size_ = 0;
		ctx_.notify(POLLOUT);
		return 0;
	}

	void push(std::span<const std::byte> in)
	{
		size_t tail = (head_ + size_) % buf_.size();
		size_t first = std::min(in.size(), buf_.size() - tail);
		std::copy_n(in.begin(), first, buf_.begin() + static_cast<ptrdiff_t>(tail));
		std::copy_n(in.begin() + static_cast<ptrdiff_t>(first), in.size() - first, buf_.begin());
		size_ += in.size();
	}

	DeviceContext &ctx_;
	size_t capacity_;
	std::vector<std::byte> buf_; /* capacity_ bytes once started */
	size_t head_ = 0;
	size_t size_ = 0;
	bool dropWhenFull_;
	uint64_t dropped_ = 0;
};

const InjectVerb<LoopbackModel> LoopbackModel::kVerbs[3] = {
	{ "data", "TEXT", "queue TEXT as if written (escapes \\n \\t \\xNN)", &LoopbackModel::injectBytes },
	{ "hex", "BYTES", "queue bytes given in hex (\"68 69 0a\")", &LoopbackModel::injectBytes },
	{ "clear", "", "discard everything buffered", &LoopbackModel::injectClear },
};

} // namespace

void registerLoopbackModel(ModelRegistry &registry)
{
	registry.add(
		{ "loopback", "bounded FIFO: bytes written are read back in order",
		  "capacity=BYTES        FIFO size, 1 to 64M, k/M suffixes (default 64K)\n"
		  "when_full=block|drop  a full FIFO blocks writers, or drops and counts the excess (default block)\n",
		  [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			  size_t capacity = opts.number("capacity", 64 * 1024, 1, 64ULL << 20);
			  bool drop = opts.choice("when_full", "block", { "block", "drop" }) == "drop";
			  return std::make_unique<LoopbackModel>(ctx, capacity, drop);
		  },
		  injectHelp(LoopbackModel::kVerbs) });
}

} // namespace devemu
