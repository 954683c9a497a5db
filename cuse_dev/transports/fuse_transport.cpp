// SPDX-License-Identifier: MIT
// FUSE fallback transport: the device as a one-file FUSE mount under the runtime dir (root: linked from /dev/NAME).
#include "fuse_session_transport.h"

#include "runtime_dirs.h"

#include "devemu/log.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace devemu {

const char *const kFuseFallbackLimits =
	"FUSE forwards only ioctls whose argument size is encoded in the command (_IOR/_IOW/_IOWR): FIONREAD "
	"(answered by the kernel from the file size, not by the device; use DEVEMU_IOC_NREAD), termios (TCGETS...) and pointer-holding ioctls "
	"(I2C_RDWR, SPI_IOC_MESSAGE) need CUSE or the kernel shim";

namespace {

class FuseTransport final : public FuseSessionTransport
{
public:
	explicit FuseTransport(TransportParts parts) : FuseSessionTransport(std::move(parts), true) {}
	~FuseTransport() override { stop(); }

	void stop() override;
	TransportKind kind() const override { return TransportKind::Fuse; }
	/*
	 * Root: /dev/NAME, a symlink to the mount. An ordinary user cannot write
	 * /dev: the node is the mount itself, $XDG_RUNTIME_DIR/devemu/NAME.
	 */
	std::string nodePath() const override { return user_ ? mountPath() : Transport::nodePath(); }

private:
	int openSession(std::string &error) override;
	void endedEarly(int err) override;
	static FuseTransport &self(fuse_req_t req) { return static_cast<FuseTransport &>(of(fuse_req_userdata(req))); }
	static void onInit(void *userdata, fuse_conn_info *conn);
	static void replyAttr(fuse_req_t req);
	void initialised();
	std::string mountPath() const { return runtimeDir() + "/" + parts_.node.name; }

	const bool user_ = userInstance();
	std::string mountPath_;
	bool madeMountPoint_ = false;
	bool linked_ = false;
};

void FuseTransport::onInit(void *userdata, fuse_conn_info *conn)
{
	auto &f = static_cast<FuseTransport &>(of(userdata));
	conn->max_write = f.slotSize();
	conn->max_read = f.slotSize();
	conn->want &= ~FUSE_CAP_ASYNC_READ;
	asio::post(f.parts_.strand, [&f] { f.initialised(); });
}

void FuseTransport::replyAttr(fuse_req_t req)
{
	const NodeSettings &node = self(req).parts_.node;
	struct stat st = {};
	st.st_ino = FUSE_ROOT_ID;
	st.st_mode = S_IFREG | (node.mode & 07777);
	st.st_nlink = 1;
	st.st_uid = node.uid;
	st.st_gid = node.gid;
	st.st_blksize = 4096;
	fuse_reply_attr(req, &st, 1.0);
}

void FuseTransport::initialised()
{
	if (user_) {
		nodeReady(0, {});
		return;
	}
	/* The mount answers now: point /dev/NAME at it. */
	std::string link = nodePath();
	if (symlink(mountPath_.c_str(), link.c_str()) < 0) {
		int err = errno;
		nodeReady(-err, fmt::format("cannot create {}: {}", link, strerror(err)));
		return;
	}
	linked_ = true;
	nodeReady(0, {});
}

/*
 * A mount left by a daemon that died: stat() fails with ENOTCONN. Detach it
 * (an ordinary user through fusermount3, as libfuse mounted it).
 */
void clearStaleMount(const std::string &path)
{
	struct stat st;
	if (stat(path.c_str(), &st) == 0 || errno != ENOTCONN)
		return;
	if (!userInstance()) {
		umount2(path.c_str(), MNT_DETACH);
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-q", "-z", path.c_str(), static_cast<char *>(nullptr));
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, nullptr, 0);
}

/* Whether path is a live mount (another devemud serves it). */
bool liveMount(const std::string &path)
{
	std::string dir = path.substr(0, path.rfind('/'));
	struct stat live, parent;
	return stat(path.c_str(), &live) == 0 && stat(dir.c_str(), &parent) == 0 && live.st_dev != parent.st_dev;
}

int FuseTransport::openSession(std::string &error)
{
	mountPath_ = mountPath();
	std::string link = Transport::nodePath();

	if (int err = ensureRuntimeDir(error); err < 0)
		return err;
	clearStaleMount(mountPath_);
	struct stat st;
	if (user_) {
		if (liveMount(mountPath_)) {
			error = fmt::format("{} is already served by another devemud", mountPath_);
			return -EEXIST;
		}
	} else if (lstat(link.c_str(), &st) == 0) {
		char target[PATH_MAX];
		ssize_t n = S_ISLNK(st.st_mode) ? readlink(link.c_str(), target, sizeof(target) - 1) : -1;
		if (n <= 0 || std::string_view(target, static_cast<size_t>(n)) != mountPath_) {
			error = fmt::format("{} already exists: the node name is taken", link);
			return -EEXIST;
		}
		/* Our link: is a live mount behind it (another devemud), or is it left over? */
		if (liveMount(mountPath_)) {
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
	madeMountPoint_ = true;

	static const fuse_lowlevel_ops ops = [] {
		fuse_lowlevel_ops o{};
		setBridgeOps<unsigned int, fuse_ino_t>(o);
		o.init = &FuseTransport::onInit;
		o.lookup = [](fuse_req_t req, fuse_ino_t, const char *) { fuse_reply_err(req, ENOENT); };
		o.getattr = [](fuse_req_t req, fuse_ino_t, fuse_file_info *) { replyAttr(req); };
		/* O_TRUNC on open arrives as a size change: a device has no size, so it is a no-op. */
		o.setattr = [](fuse_req_t req, fuse_ino_t, struct stat *, int, fuse_file_info *) { replyAttr(req); };
		return o;
	}();
	/*
	 * Root serves every user the node's mode allows (allow_other). A user's
	 * mount goes through fusermount3, which allows allow_other only with
	 * user_allow_other in /etc/fuse.conf: without it the kernel lets only
	 * that user (any of its processes, in any user namespace mapping it) in.
	 */
	std::string opts = fmt::format("{}default_permissions,fsname=devemu-{},subtype=devemu,max_read={}",
				       user_ ? "" : "allow_other,", parts_.node.name, slotSize());
	const char *argv[] = { "devemud", "-o", opts.c_str(), nullptr };
	fuse_args args = FUSE_ARGS_INIT(3, const_cast<char **>(argv));
	fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), static_cast<FuseSessionTransport *>(this));
	fuse_opt_free_args(&args);
	if (!se) {
		error = "fuse_session_new failed";
		return -ENOMEM;
	}
	if (!mountSession(se, mountPath_)) {
		error = user_ ? fmt::format("cannot mount FUSE at {} (as an ordinary user devemud needs /dev/fuse "
					    "and fusermount3 from the fuse3 package; libfuse logged why)",
					    mountPath_)
			      : fmt::format("cannot mount FUSE at {} (devemud needs root, and /dev/fuse)", mountPath_);
		return -EPERM;
	}
	return 0;
}

void FuseTransport::endedEarly(int err)
{
	nodeReady(err ? err : -EIO, "the FUSE mount ended before it was initialised");
}

void FuseTransport::stop()
{
	if (linked_) {
		unlink(Transport::nodePath().c_str());
		linked_ = false;
	}
	FuseSessionTransport::stop();
	if (madeMountPoint_) {
		unlink(mountPath_.c_str());
		madeMountPoint_ = false;
	}
}

} // namespace

std::unique_ptr<Transport> makeFuseTransport(TransportParts parts)
{
	return std::make_unique<FuseTransport>(std::move(parts));
}

} // namespace devemu
