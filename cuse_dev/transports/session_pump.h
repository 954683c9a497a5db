// SPDX-License-Identifier: MIT
// SessionPump: drives a libfuse session from the Asio loop (the reactor reads requests, libfuse processes them).
#pragma once

#include "fuse_bridge.h"

#include <functional>
#include <memory>

namespace devemu {

class SessionPump
{
public:
	/* onEnd runs once when the kernel ends the session (unmount, abort) or reading fails. */
	SessionPump(Strand strand, fuse_session *se, std::function<void(int err)> onEnd);
	~SessionPump();
	int start();
	void cancel();

private:
	void arm();
	void received(const boost::system::error_code &ec, size_t size);
	void end(int err);

	fuse_session *se_;
	std::function<void(int)> onEnd_;
	asio::posix::stream_descriptor sd_;
	std::unique_ptr<char[]> buf_;
	size_t bufSize_;
	bool ended_ = false;
	/* Read handlers hold a weak reference: one that runs after the pump is gone touches nothing. */
	std::shared_ptr<SessionPump *> self_ = std::make_shared<SessionPump *>(this);
};

} // namespace devemu
