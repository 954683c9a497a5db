// SPDX-License-Identifier: MIT
// SessionPump: drives a libfuse session from the Asio loop (wait on its fd, receive and process buffers).
#pragma once

#include "fuse_bridge.h"

#include <functional>

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
	void drain();

	Strand strand_;
	fuse_session *se_;
	std::function<void(int)> onEnd_;
	asio::posix::stream_descriptor sd_;
	fuse_buf buf_{};
	bool ended_ = false;
};

} // namespace devemu
