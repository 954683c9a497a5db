// SPDX-License-Identifier: MIT
// FuseSessionTransport: the session's lifetime (mount, pump, readiness, end, teardown) for CUSE and FUSE.
#include "fuse_session_transport.h"

#include "devemu/log.h"

#include <cerrno>
#include <cstring>

namespace devemu {

FuseSessionTransport::FuseSessionTransport(TransportParts parts, bool restrictedIoctls)
	: Transport(std::move(parts)), local_(parts_.core, parts_.node.name),
	  bridge_(parts_.strand, local_.window(), local_.driver(), restrictedIoctls)
{
	local_.driver().setShadowHandler([this] { bridge_.shadowChanged(); });
}

FuseSessionTransport::~FuseSessionTransport()
{
	FuseSessionTransport::stop();
}

bool FuseSessionTransport::mountSession(fuse_session *se, const std::string &mountpoint)
{
	se_ = se;
	if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
		fuse_session_destroy(se_);
		se_ = nullptr;
		return false;
	}
	mounted_ = true;
	return true;
}

int FuseSessionTransport::start(ReadyHandler onReady, EndHandler onEnd, std::string &error)
{
	onReady_ = std::move(onReady);
	onEnd_ = std::move(onEnd);
	int ret = openSession(error);
	if (ret < 0)
		return ret;
	pump_ = std::make_unique<SessionPump>(parts_.strand, se_, [this](int err) {
		if (!ready_)
			endedEarly(err);
		else if (onEnd_)
			onEnd_(err);
	});
	ret = pump_->start();
	if (ret < 0) {
		error = fmt::format("cannot watch the {} session: {}", kind() == TransportKind::Cuse ? "CUSE" : "FUSE",
				    strerror(-ret));
		return ret;
	}
	return 0;
}

void FuseSessionTransport::nodeReady(int err, const std::string &message)
{
	if (err == 0)
		ready_ = true;
	onReady_(err, message);
}

void FuseSessionTransport::stop()
{
	if (pump_)
		pump_->cancel();
	pump_.reset();
	if (se_) {
		/* CUSE: closing /dev/cuse removes the node. Either way the kernel fails what is left. */
		if (mounted_)
			fuse_session_unmount(se_);
		fuse_session_destroy(se_);
		se_ = nullptr;
		mounted_ = false;
	}
}

} // namespace devemu
