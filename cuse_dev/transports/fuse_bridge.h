// SPDX-License-Identifier: MIT
// FuseBridge: turns libfuse requests (CUSE or FUSE) into device-window requests and completions into replies.
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse3/fuse_lowlevel.h>

#include "devemu/asio.h"
#include "devemu/window_driver.h"

#include <map>
#include <set>
#include <memory>
#include <vector>
#include <string>

namespace devemu {

/*
 * One per served node. The CUSE and FUSE transports' ops tables call into it,
 * so both share every line of request handling: the only difference
 * is whether ioctls are restricted (FUSE carries only size-encoded arguments).
 * Every entry point runs on the device's strand and never lets an exception
 * escape into libfuse.
 */
class FuseBridge
{
public:
	FuseBridge(Strand strand, Window &window, WindowDriver &driver, bool restrictedIoctls);
	~FuseBridge();

	void open(fuse_req_t req, fuse_file_info *fi);
	void read(fuse_req_t req, size_t size, fuse_file_info *fi);
	void write(fuse_req_t req, const char *buf, size_t size, fuse_file_info *fi);
	void flush(fuse_req_t req, fuse_file_info *fi);
	void release(fuse_req_t req, fuse_file_info *fi);
	void ioctl(fuse_req_t req, unsigned int cmd, void *arg, fuse_file_info *fi, unsigned flags, const void *inBuf,
		   size_t inSize, size_t outSize);
	void poll(fuse_req_t req, fuse_file_info *fi, fuse_pollhandle *ph);

	/* Shadow registers changed: wake the kernel's pollers whose file changed. */
	void shadowChanged();

private:
	struct Armed {
		fuse_pollhandle *ph;
		uint32_t seq;
	};
	/* A waiting request whose FUSE_INTERRUPT we may see: just enough to find it again. */
	struct InterruptCookie {
		WindowDriver *driver;
		Strand strand;
		WindowDriver::RequestId id;
	};

	devemu_sqe baseSqe(fuse_req_t req, uint8_t opcode, const fuse_file_info *fi) const;
	/* Submits and arranges for FUSE_INTERRUPT to cancel the request. */
	void submit(fuse_req_t req, const devemu_sqe &sqe, std::span<const std::byte> data,
		    WindowDriver::Completion done);
	static void interrupted(fuse_req_t req, void *data);
	void disarm(uint32_t fh);

	Strand strand_;
	Window &window_;
	WindowDriver &driver_;
	bool restricted_;
	std::map<uint32_t, Armed> armed_; /* by fh */
	/*
	 * Files a 32-bit task has used: FUSE says FUSE_IOCTL_COMPAT on ioctls
	 * only, so a file is taken as compat from its first compat ioctl on and
	 * its reads, writes and polls carry DEVEMU_SQE_F_COMPAT too.
	 */
	std::set<uint32_t> compatFiles_;
	std::vector<std::unique_ptr<InterruptCookie>> cookies_;
};

} // namespace devemu
