// SPDX-License-Identifier: MIT
// FuseSessionTransport: what the CUSE transport and the FUSE fallback share (window, bridge, session, pump, teardown).
#pragma once

#include "fuse_bridge.h"
#include "session_pump.h"
#include "transport.h"

#include "devemu/local_window.h"

#include <memory>
#include <string>

namespace devemu {

/*
 * A node served through a libfuse session: a LocalWindow on the core, the
 * FuseBridge that turns the session's requests into window requests, the
 * session itself and the SessionPump that reads it on the device's strand.
 * A subclass opens and mounts the session its own way (CUSE or FUSE) and
 * says when its node exists; starting the pump, reporting readiness, the
 * session's end and the teardown are here.
 */
class FuseSessionTransport : public Transport
{
public:
	~FuseSessionTransport() override;
	int start(ReadyHandler onReady, EndHandler onEnd, std::string &error) final;
	/* Stops the pump, unmounts and destroys the session: the kernel fails what is left. */
	void stop() override;

protected:
	FuseSessionTransport(TransportParts parts, bool restrictedIoctls);

	/* Creates the session and mounts it (mountSession); 0, or -errno with error filled. */
	virtual int openSession(std::string &error) = 0;
	/* The session ended before the node was ready: report why with nodeReady(). */
	virtual void endedEarly(int err) = 0;

	/* Takes a new session and mounts it at mountpoint; false (session destroyed) if that fails. */
	bool mountSession(fuse_session *se, const std::string &mountpoint);
	/* The node exists (err 0) or cannot (err < 0, message for the user). */
	void nodeReady(int err, const std::string &message);
	uint32_t slotSize() { return local_.window().slotSize(); }
	static FuseSessionTransport &of(void *userdata) { return *static_cast<FuseSessionTransport *>(userdata); }

	/* The entries every session forwards to the bridge, in CUSE's or FUSE's ops table (Ino: FUSE's inode). */
	template<typename Cmd, typename... Ino, typename Ops>
	static void setBridgeOps(Ops &ops);

private:
	template<typename Cmd, typename... Ino>
	struct BridgeOps;

	LocalWindow local_;
	FuseBridge bridge_;
	fuse_session *se_ = nullptr;
	bool mounted_ = false;
	std::unique_ptr<SessionPump> pump_;
	ReadyHandler onReady_;
	EndHandler onEnd_;
	bool ready_ = false;
};

/* libfuse's CUSE and FUSE tables differ only by the inode FUSE passes after the request, and ioctl's cmd type. */
template<typename Cmd, typename... Ino>
struct FuseSessionTransport::BridgeOps {
	static FuseBridge &bridge(fuse_req_t req) { return of(fuse_req_userdata(req)).bridge_; }
	static void open(fuse_req_t req, Ino..., fuse_file_info *fi) { bridge(req).open(req, fi); }
	static void read(fuse_req_t req, Ino..., size_t size, off_t, fuse_file_info *fi)
	{
		bridge(req).read(req, size, fi);
	}
	static void write(fuse_req_t req, Ino..., const char *buf, size_t size, off_t, fuse_file_info *fi)
	{
		bridge(req).write(req, buf, size, fi);
	}
	static void flush(fuse_req_t req, Ino..., fuse_file_info *fi) { bridge(req).flush(req, fi); }
	static void release(fuse_req_t req, Ino..., fuse_file_info *fi) { bridge(req).release(req, fi); }
	static void fsync(fuse_req_t req, Ino..., int, fuse_file_info *) { fuse_reply_err(req, 0); }
	static void ioctl(fuse_req_t req, Ino..., Cmd cmd, void *arg, fuse_file_info *fi, unsigned flags,
			  const void *in, size_t inSize, size_t outSize)
	{
		bridge(req).ioctl(req, static_cast<unsigned>(cmd), arg, fi, flags, in, inSize, outSize);
	}
	static void poll(fuse_req_t req, Ino..., fuse_file_info *fi, fuse_pollhandle *ph)
	{
		bridge(req).poll(req, fi, ph);
	}
};

template<typename Cmd, typename... Ino, typename Ops>
void FuseSessionTransport::setBridgeOps(Ops &ops)
{
	using B = BridgeOps<Cmd, Ino...>;
	ops.open = &B::open;
	ops.read = &B::read;
	ops.write = &B::write;
	ops.flush = &B::flush;
	ops.release = &B::release;
	ops.fsync = &B::fsync;
	ops.ioctl = &B::ioctl;
	ops.poll = &B::poll;
}

} // namespace devemu
