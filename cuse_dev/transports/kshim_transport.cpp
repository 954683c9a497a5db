// SPDX-License-Identifier: MIT
// kshim transport: a node made by devemu_kshim.ko, served through the module's channel (window, doorbell, interrupt).
#include "transport.h"

#include "runtime_dirs.h"

#include "devemu/log.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace devemu {

namespace {

constexpr const char *kControlPath = "/dev/" DEVEMU_KSHIM_CONTROL_NAME;

/* Asio watches a copy of fd: closing the copy leaves the descriptor its owner keeps. */
int watchCopy(asio::posix::stream_descriptor &sd, int fd, std::string &error)
{
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0) {
		int err = errno;
		error = fmt::format("dup: {}", strerror(err));
		return -err;
	}
	sd.assign(copy);
	return 0;
}

class KshimTransport final : public Transport
{
public:
	explicit KshimTransport(TransportParts parts)
		: Transport(std::move(parts)), doorbell_(parts_.strand), channel_(parts_.strand)
	{}
	~KshimTransport() override { stop(); }

	int start(ReadyHandler onReady, EndHandler onEnd, std::string &error) override;
	void stop() override;
	TransportKind kind() const override { return TransportKind::Kshim; }
	/* A user's daemon adds user devices: their nodes are in the user's directory. */
	std::string nodePath() const override
	{
		if (!user_)
			return Transport::nodePath();
		return fmt::format("/dev/{}/{}/{}", DEVEMU_KSHIM_USER_DIR, geteuid(), parts_.node.name);
	}

private:
	void waitDoorbell();
	void watchChannel();
	void raiseInterrupt();

	UniqueFD control_;
	UniqueFD doorbellFd_;
	UniqueFD irqFd_;
	Window window_;
	asio::posix::stream_descriptor doorbell_;
	uint64_t doorbellCount_ = 0;
	asio::posix::stream_descriptor channel_; /* polls POLLHUP when the module detaches us */
	EndHandler onEnd_;
	std::optional<unsigned> windowIndex_;
	bool stopped_ = false;
	const bool user_ = userInstance();
};

int KshimTransport::start(ReadyHandler onReady, EndHandler onEnd, std::string &error)
{
	onEnd_ = std::move(onEnd);
	control_ = UniqueFD(::open(kControlPath, O_RDWR | O_CLOEXEC));
	if (!control_.isValid()) {
		int err = errno;
		if (err == ENOENT || err == ENODEV || err == ENXIO)
			error = fmt::format(
				"{} is missing: load the kernel shim first (insmod build/kshim/devemu_kshim.ko, "
				"or modprobe devemu_kshim)",
				kControlPath);
		else
			error = fmt::format("cannot open {}: {}{}", kControlPath, strerror(err),
					    user_ && err == EACCES
						    ? " (the devemu group's udev rule gives it to the group's members: "
						      "see the README, Without root)"
						    : "");
		return -err;
	}
	doorbellFd_ = UniqueFD(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	irqFd_ = UniqueFD(eventfd(0, EFD_CLOEXEC));
	if (!doorbellFd_.isValid() || !irqFd_.isValid()) {
		int err = errno;
		error = fmt::format("eventfd: {}", strerror(err));
		return -err;
	}

	devemu_kshim_add add{};
	if (parts_.node.name.size() >= sizeof(add.name)) {
		error = "device name too long for the kernel shim";
		return -ENAMETOOLONG;
	}
	std::memcpy(add.name, parts_.node.name.data(), parts_.node.name.size());
	add.mode = parts_.node.mode;
	add.uid = parts_.node.uid;
	add.gid = parts_.node.gid;
	if (user_) {
		/* A user's node is its own: the unset owner and group (root's) mean the user's. */
		add.flags |= DEVEMU_KSHIM_ADD_USER;
		if (add.uid == 0)
			add.uid = geteuid();
		if (add.gid == 0)
			add.gid = getegid();
	}
	WindowGeometry geometry;
	add.queue_depth = geometry.queueDepth;
	add.slot_size = geometry.slotSize;
	add.doorbell_fd = doorbellFd_.get();
	add.irq_fd = irqFd_.get();
	add.features = DEVEMU_KSHIM_FEATURES;
	if (parts_.node.fifo.value_or(true) && parts_.core.model()) {
		/* A streaming model: read() and write() are served by the module from stream FIFOs. */
		StreamSpec stream = parts_.core.model()->stream();
		uint32_t loop = stream.rx && stream.tx ? stream.loopCapacity : 0;
		/*
		 * A loop needs room in tx for its largest atomic write. Served through CUSE as well, a
		 * stream's received bytes would sit in our FIFO out of the other node's reach, unless the
		 * model makes them on demand (zero, rng).
		 */
		const char *why = parts_.node.shared && stream.rx && !stream.onDemandRx
					  ? "a byte stream served by two drivers"
				  : loop > DEVEMU_MAX_FIFO_SIZE ? "a loop larger than the largest FIFO"
								: nullptr;
		uint32_t size = stream.fifoSize ? stream.fifoSize : kDefaultFifoSize;
		if (!why && (!std::has_single_bit(size) || size < DEVEMU_MIN_FIFO_SIZE || size > DEVEMU_MAX_FIFO_SIZE))
			why = "the model's FIFO size is not a power of two between 4 KiB and 4 MiB";
		if (why) {
			DEVEMU_LOG(Debug, parts_.node.name, "reads and writes by requests ({})", why);
		} else {
			add.rx_fifo_size = !stream.rx ? 0 : stream.constantRx ? kConstantRxFifoSize : size;
			add.tx_fifo_size = stream.tx ? std::max(size, std::bit_ceil(loop)) : 0;
			add.stream_capacity = loop;
		}
		/* A queue per open file (evdev): each of the first files gets a receive FIFO of its own. */
		if (stream.fileRecord) {
			uint32_t fileSize = std::max(stream.fileFifoSize, DEVEMU_MIN_FIFO_SIZE);
			if (std::has_single_bit(fileSize) && fileSize <= DEVEMU_MAX_FILE_FIFO_SIZE &&
			    stream.fileRecord <= fileSize) {
				add.file_fifo_count = kFileFifoCount;
				add.file_fifo_size = fileSize;
			} else {
				DEVEMU_LOG(Warning, parts_.node.name,
					   "reads by requests (per-file FIFO of {} bytes: not a power of two up to 64 "
					   "KiB)",
					   fileSize);
			}
		}
	}

	int channel = ioctl(control_.get(), DEVEMU_KSHIM_IOC_ADD, &add);
	bool reattached = false;
	if (channel < 0 && errno == EEXIST) {
		/* The device outlived a daemon that died: serve it again, in a new epoch. */
		channel = ioctl(control_.get(), DEVEMU_KSHIM_IOC_ATTACH, &add);
		reattached = channel >= 0;
		if (channel < 0 && errno == EBUSY) {
			error = fmt::format("{} is already served by another daemon", nodePath());
			return -EBUSY;
		}
	}
	if (channel < 0) {
		int err = errno;
		error = fmt::format("the kernel shim refused {}: {}", nodePath(), strerror(err));
		if (user_ && err == EPERM)
			error += fmt::format(" (a user's device must be its own uid {}, a group of its own, give others no "
					     "access (mode {:04o}) and keep its window within {} MiB)",
					     geteuid(), parts_.node.mode, DEVEMU_KSHIM_USER_WINDOW_MAX >> 20);
		else if (user_ && err == EDQUOT)
			error += " (each user may have the kernel shim's max_user_devices devices at once)";
		return -err;
	}
	int ret = Window::attach(UniqueFD(channel), window_);
	if (ret < 0) {
		error = fmt::format("cannot map the kernel shim's window: {}", strerror(-ret));
		return ret;
	}
	windowIndex_ = parts_.core.attachWindow(window_, [this](uint32_t) { raiseInterrupt(); });
	if (reattached)
		DEVEMU_LOG(Info, parts_.node.name, "re-attached to {} (epoch {})", nodePath(),
			   window_.regs().attach_epoch);

	if ((ret = watchCopy(doorbell_, doorbellFd_.get(), error)) < 0)
		return ret;
	waitDoorbell();
	if ((ret = watchCopy(channel_, window_.fd(), error)) < 0)
		return ret;
	watchChannel();
	/* Requests may have been published before we waited: look once. */
	asio::post(parts_.strand, [this] {
		if (!stopped_)
			parts_.core.doorbell();
	});
	struct stat st;
	if (stat(nodePath().c_str(), &st) < 0) {
		error = fmt::format("the kernel shim created the device but {} did not appear (is devtmpfs mounted?)",
				    nodePath());
		return -ENOENT;
	}
	asio::post(parts_.strand, [onReady = std::move(onReady)] { onReady(0, {}); });
	return 0;
}

void KshimTransport::waitDoorbell()
{
	/*
	 * The reactor reads the counter itself: tried at once when re-armed and otherwise on the next
	 * edge, with no epoll re-registration (a readiness wait would cost an epoll_ctl per doorbell).
	 * One read resets an eventfd, so a doorbell costs epoll_wait and read, plus one EAGAIN read
	 * when the loop goes idle.
	 */
	doorbell_.async_read_some(asio::buffer(&doorbellCount_, sizeof(doorbellCount_)),
				  [this](const boost::system::error_code &ec, size_t) {
					  if (stopped_ || ec == asio::error::operation_aborted)
						  return;
					  if (ec)
						  DEVEMU_LOG(Error, parts_.node.name, "doorbell read failed: {}",
							     ec.message());
					  parts_.core.doorbell();
					  parts_.core.busyPoll(parts_.busyPoll);
					  if (!ec)
						  waitDoorbell();
				  });
}

void KshimTransport::watchChannel()
{
	/*
	 * The module detaches a channel on a protocol error, or when the device is removed by someone
	 * else: the channel then polls POLLHUP and nothing will reach us through it again.
	 */
	channel_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code &ec) {
		if (ec || stopped_)
			return;
		pollfd p{ window_.fd(), POLLIN, 0 };
		if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
			DEVEMU_LOG(Error, parts_.node.name,
				   "the kernel shim detached {} (removed elsewhere, or a protocol error)", nodePath());
			if (onEnd_)
				onEnd_(-ENODEV);
			return;
		}
		watchChannel();
	});
}

void KshimTransport::raiseInterrupt()
{
	/* The module's wait-queue callback runs inside this write and drains the completions. */
	uint64_t one = 1;
	if (::write(irqFd_.get(), &one, sizeof(one)) != sizeof(one))
		DEVEMU_LOG(Error, parts_.node.name, "cannot raise the interrupt: {}", strerror(errno));
}

void KshimTransport::stop()
{
	if (stopped_)
		return;
	stopped_ = true;
	boost::system::error_code ec;
	doorbell_.close(ec);
	channel_.close(ec);
	if (windowIndex_) {
		parts_.core.detachWindow(*windowIndex_);
		windowIndex_.reset();
	}
	/*
	 * The callers the module holds on the stream FIFOs get the error the channel is detached with,
	 * which should be what the core answered its parked requests with: when the daemon goes away
	 * (EIO), letting the window go detaches the channel before the REMOVE; a removed device (ENODEV)
	 * is removed while attached.
	 */
	bool attached = window_.isValid();
	if (parts_.core.stopError() != -ENODEV)
		window_ = Window();
	if (control_.isValid() && attached) {
		char name[DEVEMU_DEVICE_NAME_MAX] = {};
		std::memcpy(name, parts_.node.name.data(), std::min(parts_.node.name.size(), sizeof(name) - 1));
		if (ioctl(control_.get(), DEVEMU_KSHIM_IOC_REMOVE, name) < 0)
			DEVEMU_LOG(Warning, parts_.node.name, "cannot remove {}: {}", nodePath(), strerror(errno));
	}
	window_ = Window();
}

} // namespace

std::unique_ptr<Transport> makeKshimTransport(TransportParts parts)
{
	return std::make_unique<KshimTransport>(std::move(parts));
}

} // namespace devemu
