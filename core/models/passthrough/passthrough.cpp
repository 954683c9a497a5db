// SPDX-License-Identifier: MIT
// passthrough: forwards every operation to a real device node, and with record=FILE writes them to a trace.
#include "trace/ioctl_table.h"
#include "trace/trace.h"

#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"

#include <fmt/core.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

namespace devemu {

namespace {

using trace::IoctlArg;
using trace::OpKind;
using trace::TraceOp;

TraceOp traceOp(OpKind kind, uint32_t file)
{
	TraceOp op;
	op.kind = kind;
	op.file = file;
	return op;
}

/*
 * The real node opened for one client open: non-blocking, watched by the
 * strand's reactor. A wait is armed only after the node said it is not ready
 * (EAGAIN, or poll without the bit), so a ready node never spins the reactor.
 */
struct RealNode {
	explicit RealNode(asio::posix::stream_descriptor d) : fd(std::move(d)) {}
	asio::posix::stream_descriptor fd;
	bool waitingRead = false;
	bool waitingWrite = false;
};

struct PassthroughFile : FileState {
	std::shared_ptr<RealNode> node;
	uint32_t traceId = 0; /* the file's number in the trace: opens in order */
	bool inputReady = false; /* POLLIN or POLLPRI at the last poll evaluation */
	~PassthroughFile() override
	{
		boost::system::error_code ignored;
		node->fd.close(ignored); /* waits still armed end with operation_aborted */
	}
};

class PassthroughModel final : public Model
{
public:
	PassthroughModel(DeviceContext &ctx, std::string path, std::string recordPath)
		: ctx_(ctx), path_(std::move(path)), recordPath_(std::move(recordPath))
	{}
	~PassthroughModel() override { *alive_ = false; }

	int start(std::string &error) override
	{
		struct stat st;
		if (::stat(path_.c_str(), &st) < 0) {
			int err = errno;
			error = fmt::format("cannot forward to {}: {}", path_, std::strerror(err));
			return -err;
		}
		if (S_ISDIR(st.st_mode)) {
			error = fmt::format("cannot forward to {}: a directory", path_);
			return -EISDIR;
		}
		if (!recordPath_.empty()) {
			int ret = writer_.open(recordPath_, error);
			if (ret < 0)
				return ret;
			DEVEMU_LOG(Info, ctx_.name(), "passthrough to {}, recording to {}", path_, recordPath_);
		}
		return 0;
	}

	int open(OpenFile &f) override
	{
		int flags = static_cast<int>(f.flags & (O_ACCMODE | O_APPEND | O_SYNC | O_DSYNC));
		int fd = ::open(path_.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		int ret = fd < 0 ? -errno : 0;
		TraceOp op = traceOp(OpKind::Open, nextTraceId_);
		op.result = ret;
		op.flags = f.flags;
		record(std::move(op));
		if (fd < 0)
			return ret;
		auto state = std::make_unique<PassthroughFile>();
		state->node = std::make_shared<RealNode>(asio::posix::stream_descriptor(ctx_.strand(), fd));
		state->traceId = nextTraceId_++;
		f.state = std::move(state);
		return 0;
	}

	void release(OpenFile &f) override
	{
		record(traceOp(OpKind::Release, file(f).traceId));
		f.state.reset();
	}

	ssize_t read(OpenFile &f, std::span<std::byte> out) override
	{
		auto &pf = file(f);
		ssize_t n = ::read(pf.node->fd.native_handle(), out.data(), out.size());
		if (n < 0 && errno == EAGAIN) {
			watch(pf, false);
			return -EAGAIN;
		}
		ssize_t ret = n < 0 ? -errno : n;
		TraceOp op = traceOp(OpKind::Read, pf.traceId);
		op.result = ret;
		if (n > 0) {
			auto p = reinterpret_cast<const uint8_t *>(out.data());
			op.data.assign(p, p + n);
			/* Fewer bytes are readable now: the shadow the kernel shim answers FIONREAD from must say so. */
			ctx_.notify();
		}
		record(std::move(op));
		return ret;
	}

	ssize_t write(OpenFile &f, std::span<const std::byte> in) override
	{
		auto &pf = file(f);
		ssize_t n = ::write(pf.node->fd.native_handle(), in.data(), in.size());
		if (n < 0 && errno == EAGAIN) {
			watch(pf, true);
			return -EAGAIN;
		}
		ssize_t ret = n < 0 ? -errno : n;
		auto p = reinterpret_cast<const uint8_t *>(in.data());
		TraceOp op = traceOp(OpKind::Write, pf.traceId);
		op.result = ret;
		op.data.assign(p, p + (n > 0 ? n : static_cast<ssize_t>(in.size())));
		record(std::move(op));
		return ret;
	}

	IoctlResult ioctl(OpenFile &f, IoctlCall &call) override
	{
		auto &pf = file(f);
		const uint32_t request = call.cmd();
		auto layout = trace::ioctlLayout(request);
		if (!layout) {
			if (std::find(warned_.begin(), warned_.end(), request) == warned_.end()) {
				warned_.push_back(request);
				DEVEMU_LOG(Warning, ctx_.name(),
					   "passthrough: ioctl {:#x} is neither size-encoded nor in the ioctl table "
					   "(core/models/trace/ioctl_table.cpp): ENOTTY",
					   request);
			}
			return IoctlResult::error(-ENOTTY);
		}
		if (layout->arg == IoctlArg::Pointers)
			return pointerIoctl(pf, call, *layout->pointers);
		/* Gather the input and make sure the output can be carried before the real device acts, once. */
		std::vector<uint8_t> buf(layout->size);
		bool takesIn = layout->arg == IoctlArg::In || layout->arg == IoctlArg::InOut;
		bool givesOut = layout->arg == IoctlArg::Out || layout->arg == IoctlArg::InOut;
		if (takesIn) {
			auto in = call.readUser(call.arg(), layout->size);
			if (!in)
				return call.done();
			std::memcpy(buf.data(), in->data(), in->size());
		}
		if (givesOut && !call.canWriteUser(call.arg(), layout->size)) {
			call.writeUser(call.arg(), std::as_bytes(std::span(buf))); /* names the range for the retry */
			return call.done();
		}
		TraceOp op = traceOp(OpKind::Ioctl, pf.traceId);
		op.request = request;
		if (takesIn)
			op.in = buf;
		int fd = pf.node->fd.native_handle();
		int ret;
		switch (layout->arg) {
		case IoctlArg::None:
			ret = ::ioctl(fd, request, 0);
			break;
		case IoctlArg::Value:
			op.arg = call.arg();
			ret = ::ioctl(fd, request, static_cast<unsigned long>(call.arg()));
			break;
		default:
			ret = ::ioctl(fd, request, buf.data());
			break;
		}
		op.result = ret < 0 ? -errno : ret;
		if (ret >= 0 && givesOut) {
			op.out = buf;
			call.writeUser(call.arg(), std::as_bytes(std::span(buf)));
		}
		int result = static_cast<int>(op.result);
		record(std::move(op));
		if (ret >= 0)
			ctx_.notify(); /* a flush or a setting may change readiness */
		return result < 0 ? IoctlResult::error(result) : call.done(result);
	}

	/* A pointer-holding ioctl (I2C_RDWR): flattened by the table, run once the caller memory is all here. */
	IoctlResult pointerIoctl(PassthroughFile &pf, IoctlCall &call, const trace::PointerIoctl &codec)
	{
		TraceOp op = traceOp(OpKind::Ioctl, pf.traceId);
		op.request = call.cmd();
		std::vector<UserRange> dest;
		int gathered = codec.gather(call, op.in, dest);
		if (gathered < 0)
			return IoctlResult::error(gathered);
		if (gathered > 0)
			return call.done(); /* the retry round brings the rest */
		std::vector<uint8_t> out;
		int ret = codec.perform(pf.node->fd.native_handle(), op.request, op.in, out);
		op.result = ret;
		if (ret >= 0) {
			trace::scatterOutput(call, dest, out);
			op.out = std::move(out);
		}
		record(std::move(op));
		return ret < 0 ? IoctlResult::error(ret) : call.done(ret);
	}

	uint32_t poll(const OpenFile &f) override
	{
		auto &pf = f.stateAs<PassthroughFile>();
		struct pollfd p {
			pf.node->fd.native_handle(), POLLIN | POLLOUT | POLLPRI, 0
		};
		if (::poll(&p, 1, 0) < 0)
			return POLLERR;
		uint32_t revents = static_cast<uint16_t>(p.revents);
		bool ready = revents & (POLLIN | POLLPRI);
		if (ready && !pf.inputReady && writer_.isOpen()) {
			/* The node became readable: kept for the trace unless a read of this file comes next. */
			TraceOp op = traceOp(OpKind::Poll, pf.traceId);
			op.flags = POLLIN | POLLPRI | POLLOUT;
			op.revents = revents;
			pendingPolls_.push_back({ std::move(op), std::chrono::steady_clock::now() });
		}
		pf.inputReady = ready;
		if (!(revents & (POLLIN | POLLPRI | POLLHUP | POLLERR)))
			watch(pf, false);
		if (!(revents & (POLLOUT | POLLHUP | POLLERR)))
			watch(pf, true);
		return revents;
	}

	uint32_t readable(const OpenFile &f) override
	{
		int n = 0;
		if (::ioctl(f.stateAs<PassthroughFile>().node->fd.native_handle(), FIONREAD, &n) < 0 || n < 0)
			return 0;
		return static_cast<uint32_t>(n);
	}

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		return runInjectVerb(*this, kVerbs, args, reply);
	}

	static const InjectVerb<PassthroughModel> kVerbs[1];

private:
	int injectStatus(const std::vector<std::string> &, std::string &reply)
	{
		reply = fmt::format("path={} record={} operations={}", path_, recordPath_.empty() ? "-" : recordPath_,
				    writer_.count());
		return 0;
	}

	static PassthroughFile &file(const OpenFile &f) { return f.stateAs<PassthroughFile>(); }

	/* Asks the reactor to say when the real node can be read (or written): then the core retries. */
	void watch(PassthroughFile &pf, bool forWrite)
	{
		auto node = pf.node;
		bool &waiting = forWrite ? node->waitingWrite : node->waitingRead;
		if (waiting)
			return;
		waiting = true;
		auto alive = alive_;
		node->fd.async_wait(forWrite ? asio::posix::descriptor_base::wait_write
					     : asio::posix::descriptor_base::wait_read,
				    [this, node, alive, forWrite](const boost::system::error_code &ec) {
					    (forWrite ? node->waitingWrite : node->waitingRead) = false;
					    if (ec == asio::error::operation_aborted || !*alive)
						    return;
					    ctx_.notify(forWrite ? POLLOUT : POLLIN);
				    });
	}

	/*
	 * Writes op, after the readiness changes seen before it. A file's change
	 * to readable followed by its read says nothing the read does not (its
	 * delay is the waiting); one followed by anything else is how a program
	 * waiting in poll() or select() learnt of an event it does not read
	 * (hwclock's update interrupt): that one is a poll line.
	 */
	void record(TraceOp op)
	{
		if (!writer_.isOpen())
			return;
		for (auto &[poll, when] : pendingPolls_)
			if (!(op.kind == OpKind::Read && op.file == poll.file))
				writer_.append(std::move(poll), when);
		pendingPolls_.clear();
		writer_.append(std::move(op));
	}

	DeviceContext &ctx_;
	std::string path_;
	std::string recordPath_;
	trace::TraceWriter writer_;
	uint32_t nextTraceId_ = 0;
	std::vector<std::pair<TraceOp, std::chrono::steady_clock::time_point>> pendingPolls_;
	std::vector<uint32_t> warned_;
	std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

const InjectVerb<PassthroughModel> PassthroughModel::kVerbs[1] = {
	{ "status", "", "path= record= operations= (recorded so far)", &PassthroughModel::injectStatus },
};

} // namespace

void registerPassthroughModel(ModelRegistry &registry)
{
	registry.add({ "passthrough", "forwards to a real device node; record=FILE writes a trace for replay",
		       "path=/dev/NODE        the real node (required)\n"
		       "record=FILE           write every operation to this trace\n",
		       [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			       std::string path = opts.string("path", "");
			       if (path.empty())
				       opts.fail("path", "required: the real node to forward to (path=/dev/ttyUSB0)");
			       std::string record = opts.string("record", "");
			       return std::make_unique<PassthroughModel>(ctx, std::move(path), std::move(record));
		       },
		       injectHelp(PassthroughModel::kVerbs) });
}

} // namespace devemu
