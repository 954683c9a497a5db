// SPDX-License-Identifier: MIT
// FUSE fallback frontend: the device as a one-file FUSE mount under /run/devemu, linked from /dev/NAME.
#include "transport.h"
#include "fuse_bridge.h"
#include "session_pump.h"

#include "devemu/log.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

namespace devemu {

const char *const kFuseFallbackLimits =
	"FUSE forwards only ioctls whose argument size is encoded in the command (_IOR/_IOW/_IOWR): FIONREAD "
	"(answered by the kernel as 0; use DEVEMU_IOC_NREAD), termios (TCGETS...) and pointer-holding ioctls "
	"(I2C_RDWR, SPI_IOC_MESSAGE) need CUSE or the kernel shim";

namespace {

constexpr const char *kRunDir = "/run/devemu";

class FuseFrontend final : public Frontend
{
public:
	explicit FuseFrontend(FrontendParts parts)
		: parts_(std::move(parts)), local_(parts_.core, parts_.node.name),
		  bridge_(parts_.strand, local_.window(), local_.driver(), true)
	{
		local_.driver().setShadowHandler([this] { bridge_.shadowChanged(); });
	}
	~FuseFrontend() override { stop(); }

	int start(ReadyHandler onReady, EndHandler onEnd, std::string &error) override;
	void stop() override;
	std::string nodePath() const override { return "/dev/" + parts_.node.name; }
	const char *transport() const override { return "fuse"; }

	FuseBridge &bridge() { return bridge_; }
	void fillAttr(struct stat &st) const
	{
		st = {};
		st.st_ino = FUSE_ROOT_ID;
		st.st_mode = S_IFREG | (parts_.node.mode & 07777);
		st.st_nlink = 1;
		st.st_uid = parts_.node.uid;
		st.st_gid = parts_.node.gid;
		st.st_blksize = 4096;
	}
	void initialised()
	{
		/* The mount answers now: point /dev/NAME at it. */
		std::string link = nodePath();
		if (symlink(mountPath_.c_str(), link.c_str()) < 0) {
			int err = errno;
			onReady_(-err, fmt::format("cannot create {}: {}", link, strerror(err)));
			return;
		}
		linked_ = true;
		ready_ = true;
		onReady_(0, {});
	}

	FrontendParts parts_;
	LocalWindow local_;
	FuseBridge bridge_;

private:
	fuse_session *se_ = nullptr;
	std::unique_ptr<SessionPump> pump_;
	std::string mountPath_;
	ReadyHandler onReady_;
	EndHandler onEnd_;
	bool mounted_ = false;
	bool linked_ = false;
	bool ready_ = false;
};

FuseFrontend *self(fuse_req_t req)
{
	return static_cast<FuseFrontend *>(fuse_req_userdata(req));
}

const fuse_lowlevel_ops kFuseOps = [] {
	fuse_lowlevel_ops ops{};
	ops.init = [](void *userdata, fuse_conn_info *conn) {
		auto *f = static_cast<FuseFrontend *>(userdata);
		conn->max_write = f->local_.window().slotSize();
		conn->max_read = f->local_.window().slotSize();
		conn->want &= ~FUSE_CAP_ASYNC_READ;
		asio::post(f->parts_.strand, [f] { f->initialised(); });
	};
	ops.lookup = [](fuse_req_t req, fuse_ino_t, const char *) { fuse_reply_err(req, ENOENT); };
	ops.getattr = [](fuse_req_t req, fuse_ino_t, fuse_file_info *) {
		struct stat st;
		self(req)->fillAttr(st);
		fuse_reply_attr(req, &st, 1.0);
	};
	ops.setattr = [](fuse_req_t req, fuse_ino_t, struct stat *, int, fuse_file_info *) {
		/* O_TRUNC on open arrives as a size change: a device has no size, so it is a no-op. */
		struct stat st;
		self(req)->fillAttr(st);
		fuse_reply_attr(req, &st, 1.0);
	};
	ops.open = [](fuse_req_t req, fuse_ino_t, fuse_file_info *fi) { self(req)->bridge().open(req, fi); };
	ops.read = [](fuse_req_t req, fuse_ino_t, size_t size, off_t, fuse_file_info *fi) {
		self(req)->bridge().read(req, size, fi);
	};
	ops.write = [](fuse_req_t req, fuse_ino_t, const char *buf, size_t size, off_t, fuse_file_info *fi) {
		self(req)->bridge().write(req, buf, size, fi);
	};
	ops.flush = [](fuse_req_t req, fuse_ino_t, fuse_file_info *fi) { self(req)->bridge().flush(req, fi); };
	ops.release = [](fuse_req_t req, fuse_ino_t, fuse_file_info *fi) { self(req)->bridge().release(req, fi); };
	ops.fsync = [](fuse_req_t req, fuse_ino_t, int, fuse_file_info *) { fuse_reply_err(req, 0); };
	ops.ioctl = [](fuse_req_t req, fuse_ino_t, unsigned int cmd, void *arg, fuse_file_info *fi, unsigned flags,
		       const void *in, size_t inSize,
		       size_t outSize) { self(req)->bridge().ioctl(req, cmd, arg, fi, flags, in, inSize, outSize); };
	ops.poll = [](fuse_req_t req, fuse_ino_t, fuse_file_info *fi, fuse_pollhandle *ph) {
		self(req)->bridge().poll(req, fi, ph);
	};
	return ops;
}();

/* A mount left by a daemon that died: stat() fails with ENOTCONN. Detach it. */
void clearStaleMount(const std::string &path)
{
	struct stat st;
	if (stat(path.c_str(), &st) < 0 && errno == ENOTCONN)
		umount2(path.c_str(), MNT_DETACH);
}

int FuseFrontend::start(ReadyHandler onReady, EndHandler onEnd, std::string &error)
{
	onReady_ = std::move(onReady);
	onEnd_ = std::move(onEnd);
	mountPath_ = fmt::format("{}/{}", kRunDir, parts_.node.name);
	std::string link = nodePath();

	if (mkdir(kRunDir, 0755) < 0 && errno != EEXIST) {
		int err = errno;
		error = fmt::format("cannot create {}: {}", kRunDir, strerror(err));
		return -err;
	}
	clearStaleMount(mountPath_);
	struct stat st;
	if (lstat(link.c_str(), &st) == 0) {
		char target[PATH_MAX];
		ssize_t n = S_ISLNK(st.st_mode) ? readlink(link.c_str(), target, sizeof(target) - 1) : -1;
		if (n <= 0 || std::string_view(target, static_cast<size_t>(n)) != mountPath_) {
			error = fmt::format("{} already exists: the node name is taken", link);
			return -EEXIST;
		}
		/* Our link: is a live mount behind it (another devemud), or is it left over? */
		struct stat live, parent;
		if (stat(mountPath_.c_str(), &live) == 0 && stat(kRunDir, &parent) == 0 &&
		    live.st_dev != parent.st_dev) {
			error = fmt::format("{} is already served by another devemud", link);
			return -EEXIST;
		}
		unlink(link.c_str());
	}
	int fd = ::open(mountPath_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = errno;
		error = fmt::format("cannot create the mount point {}: {}", mountPath_, strerror(err));
		return -err;
	}
	close(fd);

	std::string opts = fmt::format("allow_other,default_permissions,fsname=devemu-{},subtype=devemu,max_read={}",
				       parts_.node.name, local_.window().slotSize());
	const char *argv[] = { "devemud", "-o", opts.c_str(), nullptr };
	fuse_args args = FUSE_ARGS_INIT(3, const_cast<char **>(argv));
	se_ = fuse_session_new(&args, &kFuseOps, sizeof(kFuseOps), this);
	fuse_opt_free_args(&args);
	if (!se_) {
		error = "fuse_session_new failed";
		return -ENOMEM;
	}
	if (fuse_session_mount(se_, mountPath_.c_str()) != 0) {
		error = fmt::format("cannot mount FUSE at {} (devemud needs root, and /dev/fuse)", mountPath_);
		fuse_session_destroy(se_);
		se_ = nullptr;
		unlink(mountPath_.c_str());
		return -EPERM;
	}
	mounted_ = true;
	pump_ = std::make_unique<SessionPump>(parts_.strand, se_, [this](int err) {
		if (!ready_) {
			onReady_(err ? err : -EIO, "the FUSE mount ended before it was initialised");
			return;
		}
		if (onEnd_)
			onEnd_(err);
	});
	int ret = pump_->start();
	if (ret < 0) {
		error = fmt::format("cannot watch the FUSE session: {}", strerror(-ret));
		return ret;
	}
	return 0;
}

void FuseFrontend::stop()
{
	if (pump_)
		pump_->cancel();
	pump_.reset();
	if (linked_) {
		unlink(nodePath().c_str());
		linked_ = false;
	}
	if (se_) {
		if (mounted_)
			fuse_session_unmount(se_);
		fuse_session_destroy(se_);
		se_ = nullptr;
		mounted_ = false;
		unlink(mountPath_.c_str());
	}
}

} // namespace

std::unique_ptr<Frontend> makeFuseFrontend(FrontendParts parts)
{
	return std::make_unique<FuseFrontend>(std::move(parts));
}

} // namespace devemu
