// SPDX-License-Identifier: MIT
// SessionPump: non-blocking receive loop over a fuse session fd on the device strand.
#include "session_pump.h"

#include "devemu/log.h"

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <unistd.h>

namespace devemu {

SessionPump::SessionPump(Strand strand, fuse_session *se, std::function<void(int)> onEnd)
	: strand_(strand), se_(se), onEnd_(std::move(onEnd)), sd_(strand)
{
}

SessionPump::~SessionPump()
{
	boost::system::error_code ec;
	sd_.close(ec);
	free(buf_.mem);
}

int SessionPump::start()
{
	int fd = fuse_session_fd(se_);
	/* The descriptor we wait on is a dup: closing it must not close libfuse's. */
	int dupFd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dupFd < 0)
		return -errno;
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		int err = -errno;
		close(dupFd);
		return err;
	}
	sd_.assign(dupFd);
	/* The kernel may have queued requests already (FUSE INIT): look before waiting. */
	asio::post(strand_, [this] { drain(); });
	return 0;
}

void SessionPump::cancel()
{
	ended_ = true;
	boost::system::error_code ec;
	sd_.cancel(ec);
}

void SessionPump::arm()
{
	sd_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code &ec) {
		if (ec || ended_)
			return;
		drain();
	});
}

void SessionPump::drain()
{
	if (ended_)
		return;
	/* A bounded batch per wake-up keeps other devices on the loop responsive. */
	for (int i = 0; i < 64; i++) {
		int res = fuse_session_receive_buf(se_, &buf_);
		if (res == -EAGAIN)
			break;
		if (res == -EINTR)
			continue;
		if (res <= 0 || fuse_session_exited(se_)) {
			ended_ = true;
			if (onEnd_)
				onEnd_(res < 0 ? res : -ENODEV);
			return;
		}
		fuse_session_process_buf(se_, &buf_);
		if (fuse_session_exited(se_)) {
			ended_ = true;
			if (onEnd_)
				onEnd_(0);
			return;
		}
	}
	arm();
}

} // namespace devemu
