// SPDX-License-Identifier: MIT
// SessionPump: one request per reactor read on the device strand, processed by libfuse.
#include "session_pump.h"

#include "devemu/log.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/fuse.h>
#include <unistd.h>

namespace devemu {

namespace {

/*
 * What libfuse 3.14 allocates for one request: the largest request the kernel may send (max_pages
 * of 256 pages) plus a page for the headers. The kernel fails a read whose buffer is too small.
 */
size_t requestBufferSize()
{
	size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
	return 256 * page + page;
}

} // namespace

SessionPump::SessionPump(Strand strand, fuse_session *se, std::function<void(int)> onEnd)
	: se_(se), onEnd_(std::move(onEnd)), sd_(std::move(strand)), bufSize_(requestBufferSize())
{}

SessionPump::~SessionPump()
{
	boost::system::error_code ec;
	sd_.close(ec);
}

int SessionPump::start()
{
	buf_ = std::make_unique<char[]>(bufSize_);
	/* The descriptor we read is a dup: closing it must not close libfuse's (replies go there). */
	int dupFd = fcntl(fuse_session_fd(se_), F_DUPFD_CLOEXEC, 3);
	if (dupFd < 0)
		return -errno;
	boost::system::error_code ec;
	sd_.assign(dupFd, ec);
	if (!ec)
		sd_.non_blocking(true, ec);
	if (ec)
		return -ec.value();
	arm();
	return 0;
}

void SessionPump::cancel()
{
	ended_ = true;
	boost::system::error_code ec;
	sd_.cancel(ec);
}

/*
 * Why the reactor reads rather than libfuse's fuse_session_receive_buf() after a readiness wait:
 * a wait re-registers the descriptor with the epoll set (an epoll_ctl per request) and, the set
 * being edge-triggered, forces a read until EAGAIN before each sleep. A reactor read is tried at
 * once (speculatively) and otherwise waits for the next edge with no re-registration: a request
 * then costs epoll_wait, read and the reply's writev, plus one EAGAIN read when the loop goes idle.
 */
void SessionPump::arm()
{
	/*
	 * Destroying the pump (the device is removed) closes the descriptor: the pending read then
	 * completes with operation_aborted after the pump is freed, so the handler checks that it
	 * still exists before it looks at any member.
	 */
	sd_.async_read_some(
		asio::buffer(buf_.get(), bufSize_),
		[self = std::weak_ptr<SessionPump *>(self_)](const boost::system::error_code &ec, size_t size) {
			if (auto pump = self.lock())
				(*pump)->received(ec, size);
		});
}

void SessionPump::received(const boost::system::error_code &ec, size_t size)
{
	if (ended_)
		return;
	if (ec) {
		if (ec == asio::error::operation_aborted)
			return;
		if (ec.value() == ENOENT) {
			/* The request was interrupted before we read it: the kernel dropped it. */
			arm();
			return;
		}
		/* ENODEV (or end of file): the kernel ended the session (unmount, abort, device gone). */
		end(ec == asio::error::eof || ec.value() == ENODEV ? -ENODEV : -ec.value());
		return;
	}
	if (size < sizeof(fuse_in_header)) {
		DEVEMU_LOG(Error, "fuse", "short read on the session device: {} bytes", size);
		end(-EIO);
		return;
	}
	fuse_buf buf{};
	buf.mem = buf_.get();
	buf.size = size;
	fuse_session_process_buf(se_, &buf);
	if (fuse_session_exited(se_)) {
		end(0);
		return;
	}
	arm();
}

void SessionPump::end(int err)
{
	ended_ = true;
	fuse_session_exit(se_);
	if (onEnd_)
		onEnd_(err);
}

} // namespace devemu
