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
#include <fcntl.h>
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

/* A file number no recorded file has: umockdev ioctl answers, which every file may take. */
constexpr uint32_t kAnyFile = UINT32_MAX;

/*
 * Where one dialogue stands: the next operation, the bytes of it already
 * moved, and the clock its next delay counts from. A trace with open lines
 * has one per recorded file (each open file of the program takes one); a
 * script or an evemu file, which have none, has one that every open file shares.
 */
struct Cursor {
	uint32_t file = 0; /* the recorded file it walks; kAnyFile: walks nothing (an open never recorded) */
	bool taken = false; /* an open of the program took it */
	size_t pos = 0; /* the next operation of its file (ops.size(): none left) */
	size_t readOffset = 0; /* bytes of the read at pos already delivered */
	size_t writeOffset = 0; /* bytes of the write at pos already matched */
	Clock::time_point base = Clock::now(); /* when its previous operation was taken */
	std::chrono::microseconds baseAt{ 0 }; /* the recorded time of that operation */
	bool clockStarted = false;
};

struct ReplayFile : FileState {
	size_t cursor = 0; /* index in cursors_ */
};

/*
 * Each open file walks its own recorded file's operations (a trace without
 * open lines is one dialogue that all open files share). Reads and writes are
 * taken in the recorded order of that file; opens, releases, polls and ioctls
 * in between are passed over (their time still counts). An ioctl is answered by
 * the recorded ioctl with the same request and input, the nearest one at or
 * after the cursor of its file first, then anywhere in the trace.
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
			for (auto &op : answers.ops)
				op.file = kAnyFile;
			trace_.ops.insert(trace_.ops.begin(), answers.ops.begin(), answers.ops.end());
			if (!answers.device.empty())
				DEVEMU_LOG(Info, ctx_.name(), "{}: ioctls recorded from {}", config_.ioctlPath,
					   answers.device);
		}
		std::chrono::microseconds at{ 0 };
		for (const auto &op : trace_.ops) {
			at += op.delay;
			recordedAt_.push_back(at);
			perFile_ = perFile_ || op.kind == OpKind::Open;
		}
		done_.assign(trace_.ops.size(), false);
		for (size_t i = 0; i < trace_.ops.size(); i++)
			done_[i] = trace_.ops[i].file == kAnyFile; /* answers, not steps of the dialogue */
		if (!perFile_)
			cursors_.push_back(Cursor{}); /* one dialogue for every open file */
		for (size_t i = 0; perFile_ && i < trace_.ops.size(); i++)
			if (trace_.ops[i].kind == OpKind::Open)
				cursors_.push_back(Cursor{ .file = trace_.ops[i].file, .pos = i });
		DEVEMU_LOG(Info, ctx_.name(), "replaying {} ({} operations{}, speed {})", config_.path,
			   trace_.ops.size(),
			   perFile_ ? fmt::format(", {} recorded open files", cursors_.size()) : std::string(),
			   config_.speed);
		publish();
		return 0;
	}

	int open(OpenFile &f) override
	{
		size_t index = 0;
		if (perFile_) {
			long found = takeOpen(f.flags);
			if (found < 0) {
				/* More opens than recorded: a file with no dialogue, whose ioctls the whole trace answers. */
				mismatches_++;
				DEVEMU_LOG(Warning, ctx_.name(),
					   "replay: open {} was not recorded in {} (it has {}): its reads wait, its "
					   "writes are mismatches",
					   opens_ + 1, config_.path, cursors_.size());
				cursors_.push_back(Cursor{ .file = kAnyFile, .taken = true, .pos = trace_.ops.size() });
				found = static_cast<long>(cursors_.size() - 1);
			}
			index = static_cast<size_t>(found);
			Cursor &c = cursors_[index];
			if (c.file != kAnyFile) {
				const TraceOp &op = trace_.ops[c.pos];
				int64_t result = op.result;
				consume(c); /* the open happened now */
				if (result < 0) {
					opens_++;
					return static_cast<int>(result); /* a recorded failing open fails the same */
				}
			}
			publish();
		} else {
			Cursor &c = cursors_[0];
			if (!c.clockStarted)
				c.base = Clock::now(); /* no open lines: delays count from the first open */
			c.clockStarted = true;
		}
		opens_++;
		auto state = std::make_unique<ReplayFile>();
		state->cursor = index;
		f.state = std::move(state);
		return 0;
	}

	void release(OpenFile &f) override
	{
		Cursor &c = cursorOf(f);
		size_t k = nextStep(c, true);
		if (k < trace_.ops.size() && trace_.ops[k].kind == OpKind::Release) {
			moveTo(c, k);
			consume(c);
		}
		f.state.reset();
	}

	ssize_t read(OpenFile &f, std::span<std::byte> out) override
	{
		Cursor &c = cursorOf(f);
		size_t k = nextStep(c);
		const TraceOp *op = k < trace_.ops.size() ? &trace_.ops[k] : nullptr;
		if (!op) {
			if (!endLogged_)
				DEVEMU_LOG(Info, ctx_.name(),
					   "replay: end of {} after {} operations: reads wait from now on",
					   describeFile(c), trace_.ops.size());
			endLogged_ = true;
			return -EAGAIN;
		}
		if (op->kind != OpKind::Read)
			return -EAGAIN; /* the trace waits for the program to write first */
		Clock::time_point due = dueTime(c, k);
		if (Clock::now() < due) {
			arm(due);
			return -EAGAIN;
		}
		moveTo(c, k);
		if (op->result <= 0) {
			int64_t result = op->result;
			consume(c);
			return static_cast<ssize_t>(result);
		}
		if (config_.source == Source::Evemu && f.compat)
			return readEvents32(c, *op, out);
		size_t n = std::min(out.size(), op->data.size() - c.readOffset);
		std::memcpy(out.data(), op->data.data() + c.readOffset, n);
		c.readOffset += n;
		if (c.readOffset == op->data.size())
			consume(c);
		ctx_.notify(); /* fewer bytes readable: the shadow the kernel shim answers FIONREAD from must say so */
		return static_cast<ssize_t>(n);
	}

	/*
	 * evemu events for a 32-bit caller: whole 16-byte struct input_events (its
	 * timeval is two 32-bit longs), as evdev's compat read gives them; EINVAL
	 * for a buffer smaller than one. The position stays in the 64-bit events
	 * the recording holds, so 32- and 64-bit readers of one replay agree.
	 */
	ssize_t readEvents32(Cursor &c, const TraceOp &op, std::span<std::byte> out)
	{
		constexpr size_t kEvent64 = 24, kEvent32 = 16;
		if (out.size() < kEvent32)
			return -EINVAL;
		size_t first = c.readOffset / kEvent64;
		size_t n = std::min(out.size() / kEvent32, op.data.size() / kEvent64 - first);
		for (size_t i = 0; i < n; i++) {
			const uint8_t *e = op.data.data() + (first + i) * kEvent64;
			int64_t sec, usec;
			std::memcpy(&sec, e, 8);
			std::memcpy(&usec, e + 8, 8);
			auto sec32 = static_cast<int32_t>(sec), usec32 = static_cast<int32_t>(usec);
			std::byte *o = out.data() + i * kEvent32;
			std::memcpy(o, &sec32, 4);
			std::memcpy(o + 4, &usec32, 4);
			std::memcpy(o + 8, e + 16, 8); /* type, code, value: the same in both layouts */
		}
		c.readOffset = (first + n) * kEvent64;
		if (c.readOffset == op.data.size())
			consume(c);
		ctx_.notify();
		return static_cast<ssize_t>(n * kEvent32);
	}

	ssize_t write(OpenFile &f, std::span<const std::byte> in) override
	{
		Cursor &c = cursorOf(f);
		size_t k = nextStep(c);
		auto stepAt = [&](size_t i) { return i < trace_.ops.size() ? &trace_.ops[i] : nullptr; };
		const TraceOp *op = stepAt(k);
		while (op && op->kind == OpKind::Write && op->data.size() == (c.pos == k ? c.writeOffset : 0) &&
		       op->result >= 0) {
			moveTo(c, k);
			consume(c); /* a recorded write of nothing */
			k = nextStep(c);
			op = stepAt(k);
		}
		if (!op || op->kind != OpKind::Write)
			return unexpectedWrite(c, in, op);
		moveTo(c, k);
		auto bytes = reinterpret_cast<const uint8_t *>(in.data());
		size_t n = std::min(in.size(), op->data.size() - c.writeOffset);
		size_t differ = 0, first = n;
		for (size_t i = 0; i < n; i++)
			if (bytes[i] != op->data[c.writeOffset + i]) {
				differ++;
				first = std::min(first, i);
			}
		unsigned fuzz = std::max(op->fuzz, config_.fuzz);
		if (differ * 100 > static_cast<size_t>(fuzz) * n) {
			mismatches_++;
			DEVEMU_LOG(Warning, ctx_.name(),
				   "replay: write mismatch at byte {} of operation {} ({}:{}), {} of {} bytes differ "
				   "(fuzz {}%): got {} expected {}; {}",
				   c.writeOffset + first, c.pos + 1, config_.path, op->line, differ, n, fuzz,
				   trace::formatBytes({ bytes, bytes + n }),
				   trace::formatBytes({ op->data.begin() + static_cast<ptrdiff_t>(c.writeOffset),
							op->data.begin() + static_cast<ptrdiff_t>(c.writeOffset + n) }),
				   config_.acceptMismatch ? "accepted" : "failing with EIO");
			publish();
			if (!config_.acceptMismatch)
				return -EIO;
		}
		c.writeOffset += n;
		if (c.writeOffset == op->data.size()) {
			int64_t result = op->result;
			consume(c);
			if (result < 0)
				return static_cast<ssize_t>(result);
		}
		return static_cast<ssize_t>(n);
	}

	IoctlResult ioctl(OpenFile &f, IoctlCall &call) override
	{
		Cursor &c = cursorOf(f);
		const uint32_t request = call.cmd();
		auto layout = trace::ioctlLayout(request);
		bool recorded = std::any_of(trace_.ops.begin(), trace_.ops.end(), [&](const TraceOp &op) {
			return op.kind == OpKind::Ioctl && op.request == request;
		});
		if (!recorded && layout && _IOC_DIR(request) == _IOC_READ) {
			/* A query recorded with another length (EVIOCGNAME(256) for EVIOCGNAME(32)): answered as evdev does. */
			long index = findIoctl(c, [&](const TraceOp &op) {
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
		long index = findIoctl(c, [&](const TraceOp &op) { return matches(op, true); });
		if (index < 0) {
			mismatches_++;
			index = findIoctl(c, [&](const TraceOp &op) { return matches(op, false); });
			const TraceOp &nearest = trace_.ops[static_cast<size_t>(index)];
			DEVEMU_LOG(Warning, ctx_.name(),
				   "replay: ioctl {} with input {} was recorded only with other input (nearest: {}:{}, "
				   "input {}); {}",
				   trace::ioctlName(request),
				   layout->arg == trace::IoctlArg::Value ? fmt::format("arg={:#x}", value)
									 : trace::formatBytes(in),
				   config_.path, nearest.line,
				   layout->arg == trace::IoctlArg::Value ? fmt::format("arg={:#x}", nearest.arg)
									 : trace::formatBytes(nearest.in),
				   config_.acceptMismatch ? "answering as it did" : "failing with EIO");
			publish();
			if (!config_.acceptMismatch)
				return IoctlResult::error(-EIO);
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
		if (static_cast<size_t>(index) >= c.pos && static_cast<size_t>(index) < nextStep(c) && mine(c, op)) {
			/* the file's next ioctl (those it skipped passed over): the dialogue moves on */
			moveTo(c, static_cast<size_t>(index));
			consume(c);
		}
		return result < 0 ? IoctlResult::error(static_cast<int>(result)) : call.done(static_cast<int>(result));
	}

	uint32_t poll(const OpenFile &f) override
	{
		uint32_t mask = POLLOUT | POLLWRNORM; /* writes are matched at once, never held */
		Cursor &c = cursorOf(f);
		size_t k = nextStep(c);
		if (k < trace_.ops.size() && trace_.ops[k].kind == OpKind::Read) {
			Clock::time_point due = dueTime(c, k);
			if (Clock::now() >= due)
				mask |= POLLIN | POLLRDNORM;
			else
				arm(due);
			return mask;
		}
		/* A recorded readiness with no read after it (hwclock's update interrupt): shown once due. */
		for (size_t i = c.pos; i < k; i++) {
			const TraceOp &op = trace_.ops[i];
			if (!mine(c, op) || op.kind != OpKind::Poll || !(op.revents & (POLLIN | POLLPRI)))
				continue;
			Clock::time_point due = dueTime(c, i);
			if (Clock::now() >= due)
				mask |= op.revents & (POLLIN | POLLPRI | POLLRDNORM);
			else
				arm(due);
			break;
		}
		return mask;
	}

	uint32_t readable(const OpenFile &f) override
	{
		Cursor &c = cursorOf(f);
		size_t k = nextStep(c);
		if (k >= trace_.ops.size() || trace_.ops[k].kind != OpKind::Read || Clock::now() < dueTime(c, k))
			return 0;
		return static_cast<uint32_t>(trace_.ops[k].data.size() - (c.pos == k ? c.readOffset : 0));
	}

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		return runInjectVerb(*this, kVerbs, args, reply);
	}

	static const InjectVerb<ReplayModel> kVerbs[1];

private:
	int injectStatus(const std::vector<std::string> &, std::string &reply)
	{
		/* The next read or write not yet taken, of whichever file. */
		std::string next = "finished";
		for (size_t i = 0; i < trace_.ops.size(); i++) {
			const TraceOp &op = trace_.ops[i];
			if (done_[i] || (op.kind != OpKind::Read && op.kind != OpKind::Write))
				continue;
			std::string what = fmt::format("{} {}:{}", trace::opName(op.kind), config_.path, op.line);
			Cursor *c = cursorAt(i);
			if (!c) {
				next = fmt::format("{} (file {}), waiting for the program to open it", what, op.file);
			} else if (op.kind == OpKind::Read) {
				auto left = std::chrono::duration_cast<std::chrono::milliseconds>(dueTime(*c, i) -
												  Clock::now());
				next = fmt::format("{} ({} bytes), {}", what, op.data.size() - c->readOffset,
						   left.count() > 0 ? fmt::format("due in {} ms", left.count())
								    : "due now");
			} else {
				next = fmt::format("{} ({} of {} bytes matched), waiting for the program", what,
						   c->writeOffset, op.data.size());
			}
			break;
		}
		reply = fmt::format("position={}/{} next={} mismatches={} unknown_ioctls={} speed={} write_mismatch={}",
				    position(), trace_.ops.size(), next, mismatches_, unknownIoctls_, config_.speed,
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

	Cursor &cursorOf(const OpenFile &f) { return cursors_[f.stateAs<ReplayFile>().cursor]; }

	/* Whether op belongs to cursor c's dialogue (every op does in a trace without open lines). */
	bool mine(const Cursor &c, const TraceOp &op) const { return !perFile_ || op.file == c.file; }

	/* The cursor of the file that takes operation i, if an open of the program took it. */
	Cursor *cursorAt(size_t i)
	{
		for (auto &c : cursors_)
			if ((c.taken || !perFile_) && mine(c, trace_.ops[i]))
				return &c;
		return nullptr;
	}

	size_t position() const { return static_cast<size_t>(std::count(done_.begin(), done_.end(), true)); }

	/*
	 * The recorded open the program's open takes: the first one not taken yet
	 * with the same access mode, else the first one not taken; -1 when none is left.
	 */
	long takeOpen(uint32_t flags)
	{
		long any = -1;
		for (size_t i = 0; i < cursors_.size(); i++) {
			Cursor &c = cursors_[i];
			if (c.taken || c.file == kAnyFile)
				continue;
			if ((trace_.ops[c.pos].flags & O_ACCMODE) == (flags & O_ACCMODE)) {
				c.taken = true;
				return static_cast<long>(i);
			}
			if (any < 0)
				any = static_cast<long>(i);
		}
		if (any >= 0)
			cursors_[static_cast<size_t>(any)].taken = true;
		return any;
	}

	/* Moves c to its file's next operation after pos (ops.size() when none is left). */
	void advance(Cursor &c)
	{
		if (c.pos < trace_.ops.size())
			done_[c.pos] = true;
		do
			c.pos++;
		while (c.pos < trace_.ops.size() && !mine(c, trace_.ops[c.pos]));
		if (c.pos < trace_.ops.size() && trace_.ops[c.pos].kind == OpKind::Open)
			c.pos = trace_.ops.size(); /* a hand-written trace that numbers a later open the same */
		c.readOffset = c.writeOffset = 0;
	}

	/* Moves c to operation k of its file; the operations before it (ioctls the program skipped) are passed over. */
	void moveTo(Cursor &c, size_t k)
	{
		while (c.pos < k)
			advance(c);
	}

	/*
	 * The index of c's next read or write (or release, with release), at or
	 * after its cursor; ops.size() at the end. The ioctls and polls before it
	 * stay where they are: the program makes them, or skips them.
	 */
	size_t nextStep(const Cursor &c, bool release = false) const
	{
		if (perFile_ && c.file == kAnyFile)
			return trace_.ops.size();
		for (size_t i = c.pos; i < trace_.ops.size(); i++) {
			const TraceOp &op = trace_.ops[i];
			if (mine(c, op) && op.kind == OpKind::Open)
				break; /* the next open of the same number is another file */
			if (mine(c, op) && (op.kind == OpKind::Read || op.kind == OpKind::Write ||
					    (release && op.kind == OpKind::Release)))
				return i;
		}
		return trace_.ops.size();
	}

	/* The operation at c's cursor happened now: the next one's delay counts from here. */
	void consume(Cursor &c)
	{
		if (c.pos < trace_.ops.size())
			c.baseAt = recordedAt_[c.pos];
		advance(c);
		c.base = Clock::now();
		c.clockStarted = true;
		publish();
		/* The next read may be due already (no delay), or later: wake or arm. */
		size_t k = nextStep(c);
		if (k < trace_.ops.size() && trace_.ops[k].kind == OpKind::Read) {
			Clock::time_point due = dueTime(c, k);
			if (Clock::now() >= due)
				ctx_.notify(POLLIN);
			else
				arm(due);
		}
	}

	/* When operation i of c's file is due: its recorded time after c's previous one, scaled by speed. */
	Clock::time_point dueTime(const Cursor &c, size_t i) const
	{
		if (config_.speed == 0)
			return c.base;
		auto delay = std::chrono::duration<double, std::micro>(recordedAt_[i] - c.baseAt) / config_.speed;
		return c.base + std::chrono::duration_cast<Clock::duration>(delay);
	}

	void arm(Clock::time_point due)
	{
		if (timer_.pending() && armedFor_ <= due)
			return; /* an earlier wake-up re-evaluates every file and arms again */
		armedFor_ = due;
		timer_.at(due, [this] { ctx_.notify(POLLIN); });
	}

	/*
	 * The matching ioctl nearest c's cursor: of its file (or umockdev's answers for
	 * any file) at or after the cursor first, then before it, then anywhere; -1 if none.
	 */
	template<typename Match>
	long findIoctl(const Cursor &c, Match match) const
	{
		auto ours = [&](const TraceOp &op) { return mine(c, op) || op.file == kAnyFile; };
		size_t from = std::min(c.pos, trace_.ops.size());
		for (size_t i = from; i < trace_.ops.size(); i++)
			if (ours(trace_.ops[i]) && match(trace_.ops[i]))
				return static_cast<long>(i);
		for (size_t i = from; i-- > 0;)
			if (ours(trace_.ops[i]) && match(trace_.ops[i]))
				return static_cast<long>(i);
		for (size_t i = 0; i < trace_.ops.size(); i++)
			if (match(trace_.ops[i]))
				return static_cast<long>(i);
		return -1;
	}

	std::string describeFile(const Cursor &c) const
	{
		if (!perFile_)
			return config_.path;
		if (c.file == kAnyFile)
			return fmt::format("an open {} does not have", config_.path);
		return fmt::format("file {} of {}", c.file, config_.path);
	}

	ssize_t unexpectedWrite(const Cursor &c, std::span<const std::byte> in, const TraceOp *next)
	{
		mismatches_++;
		auto bytes = reinterpret_cast<const uint8_t *>(in.data());
		DEVEMU_LOG(Warning, ctx_.name(), "replay: write of {} where {} expects {}; {}",
			   trace::formatBytes({ bytes, bytes + in.size() }), describeFile(c),
			   next ? fmt::format("a read first (line {})", next->line) : std::string("nothing more"),
			   config_.acceptMismatch ? "accepted" : "failing with EIO");
		publish();
		return config_.acceptMismatch ? static_cast<ssize_t>(in.size()) : -EIO;
	}

	void publish()
	{
		ctx_.setStatusWord(kPosition, static_cast<uint32_t>(position()));
		ctx_.setStatusWord(kTotal, static_cast<uint32_t>(trace_.ops.size()));
		ctx_.setStatusWord(kMismatches, static_cast<uint32_t>(mismatches_));
		ctx_.setStatusWord(kUnknownIoctls, static_cast<uint32_t>(unknownIoctls_));
	}

	DeviceContext &ctx_;
	ReplayConfig config_;
	trace::Trace trace_;
	std::vector<std::chrono::microseconds> recordedAt_; /* each operation's time since the trace began */
	std::vector<bool> done_; /* taken or passed over */
	bool perFile_ = false; /* the trace has open lines: each open file replays its own */
	std::vector<Cursor> cursors_;
	size_t opens_ = 0;
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
