// SPDX-License-Identifier: MIT
// A device model written outside the tree, as a user would: "counter" counts reads and can be set by writes.
#include <devemu/plugin.h>

#include <fmt/core.h>

#include <cerrno>
#include <charconv>
#include <poll.h>
#include <sys/ioctl.h>

namespace {

/* ioctls of this device: read the counter, and add to it. */
constexpr uint32_t COUNTER_GET = _IOR('c', 1, uint64_t);
constexpr uint32_t COUNTER_ADD = _IOW('c', 2, uint64_t);

class CounterModel final : public devemu::Model
{
public:
	CounterModel(devemu::DeviceContext &ctx, uint64_t start, uint64_t step) : ctx_(ctx), value_(start), step_(step)
	{}

	/* Each read returns the current value as a line, then steps it. */
	ssize_t read(devemu::OpenFile &, std::span<std::byte> out) override
	{
		std::string line = fmt::format("{}\n", value_);
		if (out.size() < line.size())
			return -EINVAL;
		std::memcpy(out.data(), line.data(), line.size());
		value_ += step_;
		return static_cast<ssize_t>(line.size());
	}

	/* Writing a number sets the counter. */
	ssize_t write(devemu::OpenFile &, std::span<const std::byte> in) override
	{
		std::string_view text(reinterpret_cast<const char *>(in.data()), in.size());
		while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
			text.remove_suffix(1);
		uint64_t v;
		auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
		if (ec != std::errc() || p != text.data() + text.size())
			return -EINVAL;
		value_ = v;
		ctx_.notify();
		return static_cast<ssize_t>(in.size());
	}

	devemu::IoctlResult ioctl(devemu::OpenFile &, devemu::IoctlCall &call) override
	{
		switch (call.cmd()) {
		case COUNTER_GET:
			return call.replyArg(value_);
		case COUNTER_ADD: {
			auto v = call.argIn<uint64_t>();
			if (!v)
				return call.done();
			value_ += *v;
			return call.done(0);
		}
		}
		return devemu::IoctlResult::error(-ENOTTY);
	}

	uint32_t poll(const devemu::OpenFile &) override { return POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM; }

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		if (args.size() == 2 && args[0] == "set") {
			value_ = std::stoull(args[1]);
			reply = fmt::format("counter = {}", value_);
			return 0;
		}
		reply = "verbs: set N";
		return -EINVAL;
	}

private:
	devemu::DeviceContext &ctx_;
	uint64_t value_;
	uint64_t step_;
};

void registerModels(devemu::ModelRegistry &registry)
{
	registry.add({ "counter", "counts reads; write a number to set it (example plugin)",
		       "start=N               first value (default 0)\nstep=N                increment per read "
		       "(default 1)\n",
		       [](devemu::ModelOptions &opts, devemu::DeviceContext &ctx) -> std::unique_ptr<devemu::Model> {
			       uint64_t start = opts.number("start", 0, 0, UINT64_MAX);
			       uint64_t step = opts.number("step", 1, 0, UINT64_MAX);
			       return std::make_unique<CounterModel>(ctx, start, step);
		       },
		       "set N                 set the counter\n" });
}

} // namespace

DEVEMU_PLUGIN(registerModels)
