// SPDX-License-Identifier: MIT
// CUSE transport: a /dev node through the kernel's cuse.ko, on libfuse3's cuse_lowlevel API.
#include "fuse_session_transport.h"

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

class CuseTransport final : public FuseSessionTransport
{
public:
	explicit CuseTransport(TransportParts parts) : FuseSessionTransport(std::move(parts), false) {}
	~CuseTransport() override { stop(); }

	void stop() override;
	TransportKind kind() const override { return TransportKind::Cuse; }

private:
	int openSession(std::string &error) override;
	void endedEarly(int err) override;
	static void onInit(void *userdata, fuse_conn_info *conn);
	static void onInitDone(void *userdata);
	void applyNodeSettings(int attempt);
	void retryNodeSettings(int attempt);

	std::unique_ptr<asio::steady_timer> timer_;
};

void CuseTransport::onInit(void *userdata, fuse_conn_info *conn)
{
	/* A write request never exceeds one data slot. */
	conn->max_write = static_cast<CuseTransport &>(of(userdata)).slotSize();
}

void CuseTransport::onInitDone(void *userdata)
{
	static_cast<CuseTransport &>(of(userdata)).applyNodeSettings(0);
}

/* Up to 100 attempts, 20 ms apart: udev works on the node after the kernel made it. */
constexpr int kNodeAttempts = 100;

void CuseTransport::retryNodeSettings(int attempt)
{
	timer_ = std::make_unique<asio::steady_timer>(parts_.strand, std::chrono::milliseconds(20));
	timer_->async_wait([this, attempt](const boost::system::error_code &ec) {
		if (!ec)
			applyNodeSettings(attempt + 1);
	});
}

void CuseTransport::applyNodeSettings(int attempt)
{
	std::string path = nodePath();
	struct stat st;
	if (stat(path.c_str(), &st) < 0) {
		/* devtmpfs creates the node before the INIT reply returns; udev-only systems take a moment. */
		if (attempt < kNodeAttempts) {
			retryNodeSettings(attempt);
			return;
		}
		nodeReady(-ENOENT,
			  fmt::format("CUSE accepted the device but {} never appeared (is devtmpfs mounted?)", path));
		return;
	}
	if (chown(path.c_str(), parts_.node.uid, parts_.node.gid) < 0 || chmod(path.c_str(), parts_.node.mode) < 0) {
		int err = errno;
		/*
		 * An ordinary user (a member of the devemu group) cannot change the
		 * owner of a node the kernel made: udev rules decide it
		 * (70-devemu.rules). Serve it once this user can open it (udev runs
		 * after the kernel made the node: give it the same time as above).
		 */
		if (geteuid() != 0 && (err == EPERM || err == EACCES)) {
			if (access(path.c_str(), R_OK | W_OK) == 0) {
				DEVEMU_LOG(Info, parts_.node.name, "{}: owner and mode are left to udev (not root)",
					   path);
				nodeReady(0, {});
				return;
			}
			if (attempt < kNodeAttempts) {
				retryNodeSettings(attempt);
				return;
			}
			nodeReady(-err, fmt::format("{} exists but this user cannot open it nor change its owner "
						    "(not root): a udev rule must give it to you (see 70-devemu.rules)",
						    path));
			return;
		}
		nodeReady(-err, fmt::format("cannot set owner/mode of {}: {}", path, strerror(err)));
		return;
	}
	nodeReady(0, {});
}

int CuseTransport::openSession(std::string &error)
{
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
			error = "permission denied opening /dev/cuse: devemud needs root, or membership of the devemu "
				"group "
				"(70-devemu.rules gives it /dev/cuse)";
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

	static const cuse_lowlevel_ops ops = [] {
		cuse_lowlevel_ops o{};
		setBridgeOps<int>(o);
		o.init = &CuseTransport::onInit;
		o.init_done = &CuseTransport::onInitDone;
		return o;
	}();
	const char *argv[] = { "devemud", nullptr };
	fuse_args args = FUSE_ARGS_INIT(1, const_cast<char **>(argv));
	fuse_session *se = cuse_lowlevel_new(&args, &ci, &ops, static_cast<FuseSessionTransport *>(this));
	if (!se) {
		error = "cuse_lowlevel_new failed";
		return -ENOMEM;
	}
	/* libfuse takes an already-open device as /dev/fd/N. */
	if (!mountSession(se, fmt::format("/dev/fd/{}", cuseFd.get()))) {
		error = "cannot attach the CUSE session to /dev/cuse";
		return -EIO;
	}
	cuseFd.release(); /* the session owns it now */
	return 0;
}

void CuseTransport::endedEarly(int err)
{
	nodeReady(err ? err : -EEXIST,
		  fmt::format("the kernel refused {} (is the name already taken by another CUSE device?)", nodePath()));
}

void CuseTransport::stop()
{
	if (timer_)
		timer_->cancel();
	FuseSessionTransport::stop();
}

} // namespace

std::unique_ptr<Transport> makeCuseTransport(TransportParts parts)
{
	return std::make_unique<CuseTransport>(std::move(parts));
}

/* Whether this process can open /dev/cuse: tried rather than asked with access(), which judges by
 * the real uid without capabilities, so a root daemon that dropped to --user (keeping
 * CAP_DAC_OVERRIDE) would be refused a node it can open. */
static bool cuseOpenable()
{
	int fd = ::open("/dev/cuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	::close(fd);
	return true;
}

bool cuseAvailable(std::string &why)
{
	if (access("/dev/cuse", F_OK) == 0) {
		if (cuseOpenable())
			return true;
		why = "/dev/cuse is not open to this user (root, or a member of the devemu group: 70-devemu.rules)";
		return false;
	}
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
	if (cuseOpenable())
		return true;
	why = "/dev/cuse is missing and 'modprobe cuse' failed: this kernel lacks CUSE (CONFIG_CUSE)";
	return false;
}

} // namespace devemu
