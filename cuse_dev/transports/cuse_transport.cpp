// SPDX-License-Identifier: MIT
// CUSE frontend: a /dev node through the kernel's cuse.ko, on libfuse3's cuse_lowlevel API, driven from Asio.
#include "transport.h"
#include "fuse_bridge.h"
#include "session_pump.h"

#include "devemu/log.h"

#include <fuse3/cuse_lowlevel.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace devemu {

namespace {

class CuseFrontend final : public Frontend
{
public:
	explicit CuseFrontend(FrontendParts parts)
		: parts_(std::move(parts)), local_(parts_.core, parts_.node.name),
		  bridge_(parts_.strand, local_.window(), local_.driver(), false)
	{
		local_.driver().setShadowHandler([this] { bridge_.shadowChanged(); });
	}

	~CuseFrontend() override { stop(); }

	int start(ReadyHandler onReady, EndHandler onEnd, std::string &error) override;
	void stop() override;
	std::string nodePath() const override { return "/dev/" + parts_.node.name; }
	const char *transport() const override { return "cuse"; }

	FuseBridge &bridge() { return bridge_; }

private:
	static void onInit(void *userdata, fuse_conn_info *conn);
	static void onInitDone(void *userdata);
	void applyNodeSettings(int attempt);

	FrontendParts parts_;
	LocalWindow local_;
	FuseBridge bridge_;
	fuse_session *se_ = nullptr;
	std::unique_ptr<SessionPump> pump_;
	ReadyHandler onReady_;
	EndHandler onEnd_;
	bool ready_ = false;
	std::unique_ptr<asio::steady_timer> timer_;
};

CuseFrontend *self(fuse_req_t req)
{
	return static_cast<CuseFrontend *>(fuse_req_userdata(req));
}

const cuse_lowlevel_ops kCuseOps = [] {
	cuse_lowlevel_ops ops{};
	ops.open = [](fuse_req_t req, fuse_file_info *fi) { self(req)->bridge().open(req, fi); };
	ops.read = [](fuse_req_t req, size_t size, off_t, fuse_file_info *fi) {
		self(req)->bridge().read(req, size, fi);
	};
	ops.write = [](fuse_req_t req, const char *buf, size_t size, off_t, fuse_file_info *fi) {
		self(req)->bridge().write(req, buf, size, fi);
	};
	ops.flush = [](fuse_req_t req, fuse_file_info *fi) { self(req)->bridge().flush(req, fi); };
	ops.release = [](fuse_req_t req, fuse_file_info *fi) { self(req)->bridge().release(req, fi); };
	ops.fsync = [](fuse_req_t req, int, fuse_file_info *) { fuse_reply_err(req, 0); };
	ops.ioctl = [](fuse_req_t req, int cmd, void *arg, fuse_file_info *fi, unsigned flags, const void *in,
		       size_t inSize, size_t outSize) {
		self(req)->bridge().ioctl(req, static_cast<unsigned>(cmd), arg, fi, flags, in, inSize, outSize);
	};
	ops.poll = [](fuse_req_t req, fuse_file_info *fi, fuse_pollhandle *ph) {
		self(req)->bridge().poll(req, fi, ph);
	};
	return ops;
}();

void CuseFrontend::onInit(void *userdata, fuse_conn_info *conn)
{
	auto *f = static_cast<CuseFrontend *>(userdata);
	/* A write request never exceeds one data slot. */
	conn->max_write = f->local_.window().slotSize();
}

void CuseFrontend::onInitDone(void *userdata)
{
	static_cast<CuseFrontend *>(userdata)->applyNodeSettings(0);
}

void CuseFrontend::applyNodeSettings(int attempt)
{
	std::string path = nodePath();
	struct stat st;
	if (stat(path.c_str(), &st) < 0) {
		/* devtmpfs creates the node before the INIT reply returns; udev-only systems take a moment. */
		if (attempt < 100) {
			timer_ = std::make_unique<asio::steady_timer>(parts_.strand, std::chrono::milliseconds(20));
			timer_->async_wait([this, attempt](const boost::system::error_code &ec) {
				if (!ec)
					applyNodeSettings(attempt + 1);
			});
			return;
		}
		onReady_(-ENOENT,
			 fmt::format("CUSE accepted the device but {} never appeared (is devtmpfs mounted?)", path));
		return;
	}
	if (chown(path.c_str(), parts_.node.uid, parts_.node.gid) < 0 || chmod(path.c_str(), parts_.node.mode) < 0) {
		int err = errno;
		onReady_(-err, fmt::format("cannot set owner/mode of {}: {}", path, strerror(err)));
		return;
	}
	ready_ = true;
	onReady_(0, {});
}

int CuseFrontend::start(ReadyHandler onReady, EndHandler onEnd, std::string &error)
{
	onReady_ = std::move(onReady);
	onEnd_ = std::move(onEnd);
	std::string path = nodePath();
	struct stat st;
	if (lstat(path.c_str(), &st) == 0) {
		error = fmt::format("{} already exists: the node name is taken", path);
		return -EEXIST;
	}
	UniqueFD cuseFd(::open("/dev/cuse", O_RDWR | O_CLOEXEC));
	if (!cuseFd.isValid()) {
		int err = errno;
		if (err == EACCES || err == EPERM)
			error = "permission denied opening /dev/cuse: devemud needs root (or access to /dev/cuse)";
		else
			error = fmt::format(
				"cannot open /dev/cuse: {} (this kernel needs CONFIG_CUSE; try 'modprobe cuse')",
				strerror(err));
		return -err;
	}
	std::string devname = "DEVNAME=" + parts_.node.name;
	const char *devInfo[] = { devname.c_str() };
	cuse_info ci{};
	ci.dev_info_argc = 1;
	ci.dev_info_argv = devInfo;
	ci.flags = CUSE_UNRESTRICTED_IOCTL;

	cuse_lowlevel_ops ops = kCuseOps;
	ops.init = &CuseFrontend::onInit;
	ops.init_done = &CuseFrontend::onInitDone;
	const char *argv[] = { "devemud", nullptr };
	fuse_args args = FUSE_ARGS_INIT(1, const_cast<char **>(argv));
	se_ = cuse_lowlevel_new(&args, &ci, &ops, this);
	if (!se_) {
		error = "cuse_lowlevel_new failed";
		return -ENOMEM;
	}
	/* libfuse takes an already-open device as /dev/fd/N. */
	std::string mountpoint = fmt::format("/dev/fd/{}", cuseFd.get());
	if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
		error = "cannot attach the CUSE session to /dev/cuse";
		fuse_session_destroy(se_);
		se_ = nullptr;
		return -EIO;
	}
	cuseFd.release(); /* the session owns it now */
	pump_ = std::make_unique<SessionPump>(parts_.strand, se_, [this](int err) {
		if (!ready_) {
			onReady_(err ? err : -EEXIST, fmt::format("the kernel refused /dev/{} (is the name already "
								  "taken by another CUSE device?)",
								  parts_.node.name));
			return;
		}
		if (onEnd_)
			onEnd_(err);
	});
	int ret = pump_->start();
	if (ret < 0) {
		error = fmt::format("cannot watch the CUSE session: {}", strerror(-ret));
		return ret;
	}
	return 0;
}

void CuseFrontend::stop()
{
	if (timer_)
		timer_->cancel();
	if (pump_)
		pump_->cancel();
	pump_.reset();
	if (se_) {
		/* Closing /dev/cuse makes the kernel remove the node and fail what is left. */
		fuse_session_unmount(se_);
		fuse_session_destroy(se_);
		se_ = nullptr;
	}
}

} // namespace

std::unique_ptr<Frontend> makeCuseFrontend(FrontendParts parts)
{
	return std::make_unique<CuseFrontend>(std::move(parts));
}

bool cuseAvailable(std::string &why)
{
	if (access("/dev/cuse", F_OK) == 0)
		return true;
	/* Not there yet: the module may just not be loaded. */
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = ::open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		execlp("modprobe", "modprobe", "cuse", static_cast<char *>(nullptr));
		_exit(127);
	}
	int status = 0;
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (access("/dev/cuse", F_OK) == 0)
		return true;
	why = "/dev/cuse is missing and 'modprobe cuse' failed: this kernel lacks CUSE (CONFIG_CUSE)";
	return false;
}

} // namespace devemu
