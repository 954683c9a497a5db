// SPDX-License-Identifier: MIT
// replay: serves a recorded trace (or an umockdev script): reads after their delay, writes matched, ioctls answered.
#include "trace/evemu.h"
#include "trace/ioctl_table.h"
#include "trace/trace.h"
#include "trace/umockdev_ioctl.h"

#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/strand_timer.h"

#include <fmt/core.h>

#include <asm-generic/ioctl.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace devemu {

namespace {

using trace::OpKind;
using trace::TraceOp;
using Clock = StrandTimer::Clock;

/* Which file the dialogue comes from. */
enum class Source { Trace, UmockdevScript, Evemu, None };

struct ReplayConfig {
	std::string path; /* the dialogue (trace=, script= or evemu=), or the ioctl file alone */
	Source source = Source::Trace;
	std::string ioctlPath; /* umockdev ioctl answers (ioctl=), beside the dialogue or alone */
	double speed = 1.0; /* 2: twice as fast; 0: no delays at all */
	bool acceptMismatch = false;
	unsigned fuzz = 0; /* percent of a write's bytes that may differ */
};

/* Status words (devemu_shadow, sysfs status_words on the kernel shim). */
enum StatusWord : unsigned { kPosition, kTotal, kMismatches, kUnknownIoctls };

/*
 * One cursor walks the trace. Reads and writes are taken in the recorded
 * order; opens, releases, polls and ioctls in between are passed over (their
 * delays still count). An ioctl is answered by the recorded ioctl with the
 * same request and input, wherever it is, the nearest one at or after the
 * cursor first. The trace is one dialogue: which open file does what is not
 * matched in this version.
 */
class ReplayModel final : public Model
{
public:
	ReplayModel(DeviceContext &ctx, ReplayConfig config)
		: ctx_(ctx), config_(std::move(config)), timer_(ctx.strand())
	{}

	int start(std::string &error) override
	{
		bool ok = true;
		switch (config_.source) {
		case Source::Trace:
			ok = trace::readTrace(config_.path, trace_, error);
			break;
		case Source::UmockdevScript:
			ok = trace::readUmockdevScript(config_.path, trace_, error);
			break;
		case Source::Evemu:
			ok = trace::readEvemu(config_.path, trace_, error);
			break;
		case Source::None:
			break;
		}
		if (!ok)
			return -EINVAL;
		if (!config_.ioctlPath.empty()) {
			/* Answers to state-independent queries, in any order: ahead of the dialogue, passed over by it. */
			trace::Trace answers;
			if (!trace::readUmockdevIoctl(config_.ioctlPath, answers, error))
				return -EINVAL;
			trace_.ops.insert(trace_.ops.begin(), answers.ops.begin(), answers.ops.end());
			if (!answers.device.empty())
				DEVEMU_LOG(Info, ctx_.name(), "{}: ioctls recorded from {}", config_.ioctlPath,
					   answers.device);
		}
		DEVEMU_LOG(Info, ctx_.name(), "replaying {} ({} operations, speed {})", config_.path, trace_.ops.size(),
			   config_.speed);
		publish();
		return 0;
	}

	int open(OpenFile &) override
	{
		if (at(OpKind::Open))
			consume();
		else if (!clockStarted_)
			base_ = Clock::now(); /* a script has no open lines: delays count from the first open */
		clockStarted_ = true;
		return 0;
	}

	void release(OpenFile &) override
	{
		if (at(OpKind::Release))
			consume();
	}

	ssize_t read(OpenFile &, std::span<std::byte> out) override
	{
		const TraceOp *op = settle();
		if (!op) {
			if (!endLogged_)
				DEVEMU_LOG(Info, ctx_.name(),
					   "replay: end of {} after {} operations: reads wait from now on",
					   config_.path, trace_.ops.size());
			endLogged_ = true;
			return -EAGAIN;
		}
		if (op->kind != OpKind::Read)
			return -EAGAIN; /* the trace waits for the program to write first */
		Clock::time_point due = dueTime(*op);
		if (Clock::now() < due) {
			arm(due);
			return -EAGAIN;
		}
		if (op->result <= 0) {
			int64_t result = op->result;
			consume();
			return static_cast<ssize_t>(result);
		}
		size_t n = std::min(out.size(), op->data.size() - readOffset_);
		std::memcpy(out.data(), op->data.data() + readOffset_, n);
		readOffset_ += n;
		if (readOffset_ == op->data.size())
			consume();
		return static_cast<ssize_t>(n);
	}

	ssize_t write(OpenFile &, std::span<const std::byte> in) override
	{
		const TraceOp *op = settle();
		while (op && op->kind == OpKind::Write && op->data.size() == writeOffset_ && op->result >= 0) {
			consume(); /* a recorded write of nothing */
			op = settle();
		}
		if (!op || op->kind != OpKind::Write)
			return unexpectedWrite(in, op);
		auto bytes = reinterpret_cast<const uint8_t *>(in.data());
		size_t n = std::min(in.size(), op->data.size() - writeOffset_);
		size_t differ = 0, first = n;
		for (size_t i = 0; i < n; i++)
			if (bytes[i] != op->data[writeOffset_ + i]) {
				differ++;
				first = std::min(first, i);
			}
		unsigned fuzz = std::max(op->fuzz, config_.fuzz);
		if (differ * 100 > static_cast<size_t>(fuzz) * n) {
			mismatches_++;
			DEVEMU_LOG(Warning, ctx_.name(),
				   "replay: write mismatch at byte {} of operation {} ({}:{}), {} of {} bytes differ "
				   "(fuzz {}%): got {} expected {}; {}",
				   writeOffset_ + first, cursor_ + 1, config_.path, op->line, differ, n, fuzz,
				   trace::formatBytes({ bytes, bytes + n }),
				   trace::formatBytes({ op->data.begin() + static_cast<ptrdiff_t>(writeOffset_),
							op->data.begin() + static_cast<ptrdiff_t>(writeOffset_ + n) }),
				   config_.acceptMismatch ? "accepted" : "failing with EIO");
			publish();
			if (!config_.acceptMismatch)
				return -EIO;
		}
		writeOffset_ += n;
		if (writeOffset_ == op->data.size()) {
			int64_t result = op->result;
			consume();
			if (result < 0)
				return static_cast<ssize_t>(result);
		}
		return static_cast<ssize_t>(n);
	}

	IoctlResult ioctl(OpenFile &, IoctlCall &call) override
	{
		const uint32_t request = call.cmd();
		auto layout = trace::ioctlLayout(request);
		bool recorded = std::any_of(trace_.ops.begin(), trace_.ops.end(), [&](const TraceOp &op) {
			return op.kind == OpKind::Ioctl && op.request == request;
		});
		if (!recorded && layout && _IOC_DIR(request) == _IOC_READ) {
			/* A query recorded with another length (EVIOCGNAME(256) for EVIOCGNAME(32)): answered as evdev does. */
			long index = findIoctl([&](const TraceOp &op) {
				return op.kind == OpKind::Ioctl && sameExceptSize(op.request, request);
			});
			if (index >= 0)
				return resized(call, trace_.ops[static_cast<size_t>(index)]);
		}
		if (!recorded || !layout) {
			unknownIoctls_++;
			if (std::find(warned_.begin(), warned_.end(), request) == warned_.end()) {
				warned_.push_back(request);
				DEVEMU_LOG(Warning, ctx_.name(), "replay: ioctl {} was never recorded in {}: ENOTTY",
					   trace::ioctlName(request), config_.path);
			}
			publish();
			return IoctlResult::error(-ENOTTY);
		}
		std::vector<uint8_t> in;
		std::vector<UserRange> dest;
		if (layout->arg == trace::IoctlArg::Pointers) {
			int gathered = layout->pointers->gather(call, in, dest);
			if (gathered < 0)
				return IoctlResult::error(gathered);
			if (gathered > 0)
				return call.done();
		} else if (layout->arg == trace::IoctlArg::In || layout->arg == trace::IoctlArg::InOut) {
			auto bytes = call.readUser(call.arg(), layout->size);
			if (!bytes)
				return call.done();
			auto p = reinterpret_cast<const uint8_t *>(bytes->data());
			in.assign(p, p + bytes->size());
		}
		uint64_t value = layout->arg == trace::IoctlArg::Value ? call.arg() : 0;
		auto matches = [&](const TraceOp &op, bool exact) {
			return op.kind == OpKind::Ioctl && op.request == request &&
			       (!exact || (op.in == in && op.arg == value));
		};
		long index = findIoctl([&](const TraceOp &op) { return matches(op, true); });
		if (index < 0) {
			mismatches_++;
			DEVEMU_LOG(Warning, ctx_.name(),
				   "replay: ioctl {} with input {} was recorded in {} only with other input; {}",
				   trace::ioctlName(request),
				   layout->arg == trace::IoctlArg::Value ? fmt::format("arg={:#x}", value)
									 : trace::formatBytes(in),
				   config_.path,
				   config_.acceptMismatch ? "answering as the nearest recording of it did"
							  : "failing with EIO");
			publish();
			if (!config_.acceptMismatch)
				return IoctlResult::error(-EIO);
			index = findIoctl([&](const TraceOp &op) { return matches(op, false); });
		}
		const TraceOp &op = trace_.ops[static_cast<size_t>(index)];
		if (op.result >= 0 && !op.out.empty() && layout->arg == trace::IoctlArg::Pointers) {
			trace::scatterOutput(call, dest, op.out);
			if (call.needsRetry())
				return call.done();
		} else if (op.result >= 0 && !op.out.empty() &&
			   !call.writeUser(call.arg(), std::as_bytes(std::span(op.out.data(), op.out.size())))) {
			return call.done(); /* this round cannot carry the output: the driver retries */
		}
		int64_t result = op.result;
		if (static_cast<size_t>(index) == cursor_)
			consume();
		return result < 0 ? IoctlResult::error(static_cast<int>(result)) : call.done(static_cast<int>(result));
	}

	uint32_t poll(const OpenFile &) override
	{
		uint32_t mask = POLLOUT | POLLWRNORM; /* writes are matched at once, never held */
		const TraceOp *op = settle();
		if (op && op->kind == OpKind::Read) {
			Clock::time_point due = dueTime(*op);
			if (Clock::now() >= due)
				mask |= POLLIN | POLLRDNORM;
			else
				arm(due);
		}
		return mask;
	}

	uint32_t readable(const OpenFile &) override
	{
		const TraceOp *op = settle();
		if (!op || op->kind != OpKind::Read || Clock::now() < dueTime(*op))
			return 0;
		return static_cast<uint32_t>(op->data.size() - readOffset_);
	}

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		return runInjectVerb(*this, kVerbs, args, reply);
	}

	static const InjectVerb<ReplayModel> kVerbs[1];

private:
	int injectStatus(const std::vector<std::string> &, std::string &reply)
	{
		const TraceOp *op = settle();
		std::string next = "finished";
		if (op) {
			std::string what = fmt::format("{} {}:{}", trace::opName(op->kind), config_.path, op->line);
			if (op->kind == OpKind::Read) {
				auto left = std::chrono::duration_cast<std::chrono::milliseconds>(dueTime(*op) -
												  Clock::now());
				next = fmt::format("{} ({} bytes), {}", what, op->data.size() - readOffset_,
						   left.count() > 0 ? fmt::format("due in {} ms", left.count())
								    : "due now");
			} else {
				next = fmt::format("{} ({} of {} bytes matched), waiting for the program", what,
						   writeOffset_, op->data.size());
			}
		}
		reply = fmt::format("position={}/{} next={} mismatches={} unknown_ioctls={} speed={} write_mismatch={}",
				    cursor_, trace_.ops.size(), next, mismatches_, unknownIoctls_, config_.speed,
				    config_.acceptMismatch ? "accept" : "fail");
		return 0;
	}

	static bool sameExceptSize(uint32_t a, uint32_t b)
	{
		constexpr uint32_t sizeBits = _IOC_SIZEMASK << _IOC_SIZESHIFT;
		return (a & ~sizeBits) == (b & ~sizeBits);
	}

	/* The recorded answer cut to the caller's length; the result counts the bytes it gets. */
	IoctlResult resized(IoctlCall &call, const TraceOp &op)
	{
		if (op.result < 0)
			return IoctlResult::error(static_cast<int>(op.result));
		size_t n = std::min<size_t>(_IOC_SIZE(call.cmd()), op.out.size());
		if (n && !call.writeUser(call.arg(), std::as_bytes(std::span(op.out.data(), n))))
			return call.done();
		return call.done(static_cast<int>(std::min<int64_t>(op.result, static_cast<int64_t>(n))));
	}

	bool at(OpKind kind) const { return cursor_ < trace_.ops.size() && trace_.ops[cursor_].kind == kind; }

	/* The next read or write, passing over the operations in between (their delays add up); nullptr at the end. */
	const TraceOp *settle()
	{
		while (cursor_ < trace_.ops.size()) {
			const TraceOp &op = trace_.ops[cursor_];
			if (op.kind == OpKind::Read || op.kind == OpKind::Write)
				return &op;
			carried_ += op.delay;
			cursor_++;
			readOffset_ = writeOffset_ = 0;
		}
		return nullptr;
	}

	/* The operation at the cursor happened now: the next one's delay counts from here. */
	void consume()
	{
		cursor_++;
		base_ = Clock::now();
		clockStarted_ = true;
		carried_ = {};
		readOffset_ = writeOffset_ = 0;
		publish();
		/* The next read may be due already (no delay), or later: wake or arm. */
		const TraceOp *op = settle();
		if (op && op->kind == OpKind::Read) {
			Clock::time_point due = dueTime(*op);
			if (Clock::now() >= due)
				ctx_.notify(POLLIN);
			else
				arm(due);
		}
	}

	Clock::time_point dueTime(const TraceOp &op) const
	{
		if (config_.speed == 0)
			return base_;
		auto delay = std::chrono::duration<double, std::micro>(carried_ + op.delay) / config_.speed;
		return base_ + std::chrono::duration_cast<Clock::duration>(delay);
	}

	void arm(Clock::time_point due)
	{
		if (timer_.pending() && armedFor_ == due)
			return;
		armedFor_ = due;
		timer_.at(due, [this] { ctx_.notify(POLLIN); });
	}

	/* The matching ioctl nearest the cursor: at or after it first, then before it; -1 if none. */
	template<typename Match>
	long findIoctl(Match match) const
	{
		for (size_t i = cursor_; i < trace_.ops.size(); i++)
			if (match(trace_.ops[i]))
				return static_cast<long>(i);
		for (size_t i = std::min(cursor_, trace_.ops.size()); i-- > 0;)
			if (match(trace_.ops[i]))
				return static_cast<long>(i);
		return -1;
	}

	ssize_t unexpectedWrite(std::span<const std::byte> in, const TraceOp *next)
	{
		mismatches_++;
		auto bytes = reinterpret_cast<const uint8_t *>(in.data());
		DEVEMU_LOG(Warning, ctx_.name(), "replay: write of {} where {} expects {}; {}",
			   trace::formatBytes({ bytes, bytes + in.size() }), config_.path,
			   next ? fmt::format("a read first (line {})", next->line) : std::string("nothing more"),
			   config_.acceptMismatch ? "accepted" : "failing with EIO");
		publish();
		return config_.acceptMismatch ? static_cast<ssize_t>(in.size()) : -EIO;
	}

	void publish()
	{
		ctx_.setStatusWord(kPosition, static_cast<uint32_t>(cursor_));
		ctx_.setStatusWord(kTotal, static_cast<uint32_t>(trace_.ops.size()));
		ctx_.setStatusWord(kMismatches, static_cast<uint32_t>(mismatches_));
		ctx_.setStatusWord(kUnknownIoctls, static_cast<uint32_t>(unknownIoctls_));
	}

	DeviceContext &ctx_;
	ReplayConfig config_;
	trace::Trace trace_;
	size_t cursor_ = 0;
	size_t readOffset_ = 0; /* bytes of the read at the cursor already delivered */
	size_t writeOffset_ = 0; /* bytes of the write at the cursor already matched */
	Clock::time_point base_ = Clock::now();
	bool clockStarted_ = false;
	std::chrono::microseconds carried_{ 0 }; /* delays of the operations passed over since base_ */
	StrandTimer timer_;
	Clock::time_point armedFor_{};
	uint64_t mismatches_ = 0;
	uint64_t unknownIoctls_ = 0;
	std::vector<uint32_t> warned_;
	bool endLogged_ = false;
};

const InjectVerb<ReplayModel> ReplayModel::kVerbs[1] = {
	{ "status", "",
	  "position=DONE/TOTAL next=OPERATION (due in MS) mismatches= unknown_ioctls= speed= write_mismatch=",
	  &ReplayModel::injectStatus },
};

} // namespace

void registerReplayModel(ModelRegistry &registry)
{
	registry.add(
		{ "replay", "serves a recorded trace or umockdev script: reads after their delays, writes matched",
		  "trace=FILE            a devemu trace (passthrough,record=FILE writes one)\n"
		  "script=FILE           an umockdev script (r/w/f/Q lines), instead of trace=\n"
		  "evemu=FILE            an evemu recording (description and E: events), instead of trace=\n"
		  "ioctl=FILE            umockdev ioctl answers (*.ioctl), alone or beside the above\n"
		  "speed=X               delays divided by X; 0 replays at once (default 1)\n"
		  "write_mismatch=fail|accept  a write that differs fails with EIO, or is accepted (default fail)\n"
		  "fuzz=PERCENT          bytes of a write that may differ, 0 to 100 (default 0)\n",
		  [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			  ReplayConfig config;
			  std::string tracePath = opts.string("trace", "");
			  std::string script = opts.string("script", "");
			  std::string evemu = opts.string("evemu", "");
			  config.ioctlPath = opts.string("ioctl", "");
			  int dialogues = !tracePath.empty() + !script.empty() + !evemu.empty();
			  if (dialogues > 1 || (dialogues == 0 && config.ioctlPath.empty()))
				  opts.fail(dialogues ? (evemu.empty() ? "script" : "evemu") : "trace",
					    "give one of trace=FILE (a devemu trace), script=FILE (an umockdev script) "
					    "or evemu=FILE (an evemu recording), and/or ioctl=FILE (umockdev ioctls)");
			  config.path = !tracePath.empty() ? tracePath
					: !script.empty()  ? script
					: !evemu.empty()   ? evemu
							   : config.ioctlPath;
			  config.source = !tracePath.empty() ? Source::Trace
					  : !script.empty()  ? Source::UmockdevScript
					  : !evemu.empty()   ? Source::Evemu
							     : Source::None;
			  config.speed = opts.real("speed", 1.0, 0.0, 1e6);
			  config.acceptMismatch =
				  opts.choice("write_mismatch", "fail", { "fail", "accept" }) == "accept";
			  config.fuzz = static_cast<unsigned>(opts.number("fuzz", 0, 0, 100));
			  return std::make_unique<ReplayModel>(ctx, std::move(config));
		  },
		  injectHelp(ReplayModel::kVerbs) });
}

} // namespace devemu
