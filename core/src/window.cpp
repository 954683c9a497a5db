// SPDX-License-Identifier: MIT
// Window creation (memfd, layout, register initialisation) and attachment to an existing window.
#include "devemu/window.h"

#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <sys/stat.h>

namespace devemu {

namespace {
bool isPowerOfTwo(uint32_t v)
{
	return v && !(v & (v - 1));
}
bool fifoSizeValid(uint32_t v)
{
	return !v || (isPowerOfTwo(v) && v >= DEVEMU_MIN_FIFO_SIZE && v <= DEVEMU_MAX_FIFO_SIZE);
}
bool fileFifosValid(uint32_t count, uint32_t size)
{
	if (!count)
		return !size;
	return count <= DEVEMU_MAX_FILE_FIFOS && isPowerOfTwo(size) && size >= DEVEMU_MIN_FIFO_SIZE &&
	       size <= DEVEMU_MAX_FILE_FIFO_SIZE;
}
} // namespace

WindowLayout WindowLayout::of(const WindowGeometry &g)
{
	WindowLayout l;
	l.sqOffset = devemu_window_sq_offset();
	l.cqOffset = devemu_window_cq_offset(g.queueDepth);
	l.dataOffset = devemu_window_data_offset(g.queueDepth);
	l.fifoOffset = g.rxFifoSize || g.txFifoSize ? devemu_window_fifo_offset(g.queueDepth, g.slotSize) : 0;
	l.fileFifoOffset =
		g.fileFifoCount ? devemu_window_file_fifo_offset(g.queueDepth, g.slotSize, g.rxFifoSize, g.txFifoSize)
				: 0;
	l.size = devemu_window_total_size(g.queueDepth, g.slotSize, g.rxFifoSize, g.txFifoSize, g.fileFifoCount,
					  g.fileFifoSize);
	return l;
}

Window::Window(Window &&other) noexcept
{
	*this = std::move(other);
}

Window &Window::operator=(Window &&other) noexcept
{
	if (this != &other) {
		if (base_)
			munmap(base_, size_);
		fd_ = std::move(other.fd_);
		base_ = std::exchange(other.base_, nullptr);
		size_ = std::exchange(other.size_, 0);
		geometry_ = other.geometry_;
		layout_ = other.layout_;
	}
	return *this;
}

Window::~Window()
{
	if (base_)
		munmap(base_, size_);
}

void Window::setLayout(const WindowGeometry &g, const WindowLayout &l)
{
	geometry_ = g;
	layout_ = l;
}

int Window::map(UniqueFD fd, size_t size)
{
	void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
	if (p == MAP_FAILED)
		return -errno;
	fd_ = std::move(fd);
	base_ = static_cast<uint8_t *>(p);
	size_ = size;
	return 0;
}

int Window::create(const WindowGeometry &g, std::string_view name, uint32_t deviceId, Window &out)
{
	if (!isPowerOfTwo(g.queueDepth) || g.queueDepth > DEVEMU_MAX_QUEUE_DEPTH || g.slotSize < DEVEMU_WINDOW_PAGE ||
	    g.slotSize > DEVEMU_MAX_SLOT_SIZE || name.size() >= DEVEMU_DEVICE_NAME_MAX ||
	    !fifoSizeValid(g.rxFifoSize) || !fifoSizeValid(g.txFifoSize) ||
	    !fileFifosValid(g.fileFifoCount, g.fileFifoSize))
		return -EINVAL;
	WindowLayout l = WindowLayout::of(g);
	std::string memfdName = "devemu-window-" + std::string(name);
	UniqueFD fd(memfd_create(memfdName.c_str(), MFD_CLOEXEC));
	if (!fd.isValid())
		return -errno;
	if (ftruncate(fd.get(), static_cast<off_t>(l.size)) < 0)
		return -errno;
	Window w;
	int ret = w.map(std::move(fd), l.size);
	if (ret < 0)
		return ret;
	devemu_regs &r = w.regs();
	r.magic = DEVEMU_MAGIC;
	r.abi_version = DEVEMU_ABI_VERSION;
	r.device_id = deviceId;
	r.queue_depth = g.queueDepth;
	r.slot_size = g.slotSize;
	r.max_files = DEVEMU_MAX_FILES;
	r.window_size = l.size;
	r.sq_offset = l.sqOffset;
	r.cq_offset = l.cqOffset;
	r.data_offset = l.dataOffset;
	r.rx_fifo_size = g.rxFifoSize;
	r.tx_fifo_size = g.txFifoSize;
	r.fifo_offset = l.fifoOffset;
	r.file_fifo_count = g.fileFifoCount;
	r.file_fifo_size = g.fileFifoSize;
	r.file_fifo_offset = l.fileFifoOffset;
	r.attach_epoch = 1;
	std::memcpy(r.name, name.data(), name.size());
	w.setLayout(g, l);
	out = std::move(w);
	return 0;
}

int Window::attach(UniqueFD fd, Window &out)
{
	struct stat st;
	if (fstat(fd.get(), &st) < 0)
		return -errno;
	devemu_regs regs;
	void *p = mmap(nullptr, sizeof(regs), PROT_READ, MAP_SHARED, fd.get(), 0);
	if (p == MAP_FAILED)
		return -errno;
	std::memcpy(&regs, p, sizeof(regs));
	munmap(p, sizeof(regs));
	if (regs.magic != DEVEMU_MAGIC || regs.abi_version != DEVEMU_ABI_VERSION)
		return -EPROTO;
	WindowGeometry g{ regs.queue_depth,  regs.slot_size,	   regs.rx_fifo_size,
			  regs.tx_fifo_size, regs.file_fifo_count, regs.file_fifo_size };
	if (!isPowerOfTwo(g.queueDepth) || g.queueDepth > DEVEMU_MAX_QUEUE_DEPTH || g.slotSize > DEVEMU_MAX_SLOT_SIZE ||
	    !fifoSizeValid(g.rxFifoSize) || !fifoSizeValid(g.txFifoSize) ||
	    !fileFifosValid(g.fileFifoCount, g.fileFifoSize))
		return -EPROTO;
	WindowLayout l = WindowLayout::of(g);
	if (regs.sq_offset != l.sqOffset || regs.cq_offset != l.cqOffset || regs.data_offset != l.dataOffset ||
	    regs.fifo_offset != l.fifoOffset || regs.file_fifo_offset != l.fileFifoOffset || regs.window_size != l.size)
		return -EPROTO;
	Window w;
	int ret = w.map(std::move(fd), l.size);
	if (ret < 0)
		return ret;
	w.setLayout(g, l);
	out = std::move(w);
	return 0;
}

} // namespace devemu
