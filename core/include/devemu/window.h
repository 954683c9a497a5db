// SPDX-License-Identifier: MIT
// Window: the device window (registers, shadow, rings, data slots) in shared memory, with typed accessors.
#pragma once

#include "devemu/uapi/devemu.h"
#include "devemu/unique_fd.h"

#include <atomic>
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace devemu {

static_assert(sizeof(devemu_regs) == DEVEMU_WINDOW_PAGE);
static_assert(sizeof(devemu_shadow) == DEVEMU_WINDOW_PAGE);
static_assert(sizeof(devemu_shadow_file) == 16);
static_assert(sizeof(devemu_ring) == DEVEMU_RING_ENTRIES_OFFSET);
static_assert(sizeof(devemu_sqe) == 64);
static_assert(sizeof(devemu_cqe) == 16);
static_assert(sizeof(devemu_iovec) == 16);
static_assert(offsetof(devemu_regs, name) == 0x60);
static_assert(offsetof(devemu_sqe, ioctl_arg) == 0x20);
static_assert(offsetof(devemu_regs, reserved1) == 0x58);
static_assert(offsetof(devemu_shadow, status) == 0x10);
static_assert(DEVEMU_SQE_F_ALL <= UINT16_MAX, "sqe.flags is 16 bits wide");

static_assert(sizeof(devemu_fifo) == 192);
static_assert(offsetof(devemu_regs, fifo_offset) == 0xa8);
static_assert(offsetof(devemu_regs, file_fifo_offset) == 0xb8);

struct WindowGeometry {
	uint32_t queueDepth = DEVEMU_DEFAULT_QUEUE_DEPTH;
	uint32_t slotSize = DEVEMU_DEFAULT_SLOT_SIZE;
	uint32_t rxFifoSize = 0; /* stream FIFOs: 0, or a power of 2 in [DEVEMU_MIN_FIFO_SIZE, DEVEMU_MAX_FIFO_SIZE] */
	uint32_t txFifoSize = 0;
	/* Per-file receive FIFOs: count 0 (none) to DEVEMU_MAX_FILE_FIFOS, each of fileFifoSize bytes (a power of 2
	 * in [DEVEMU_MIN_FIFO_SIZE, DEVEMU_MAX_FILE_FIFO_SIZE]). */
	uint32_t fileFifoCount = 0;
	uint32_t fileFifoSize = 0;
};

/* The default stream FIFO size the daemon asks for. */
constexpr uint32_t kDefaultFifoSize = 256 * 1024;
/* Files (the first to open, fh below it) with a receive FIFO of their own, for a model with a queue per file. */
constexpr uint32_t kFileFifoCount = 32;
/* The receive FIFO of a model whose bytes never change (StreamSpec::constantRx): a refill writes
 * nothing, so a larger ring costs only its memory and halves the daemon's wake-ups twice over. */
constexpr uint32_t kConstantRxFifoSize = 1024 * 1024;

/* Offsets of each part of a window for a geometry, as the creator lays it out. */
struct WindowLayout {
	uint64_t sqOffset;
	uint64_t cqOffset;
	uint64_t dataOffset;
	uint64_t fifoOffset; /* 0 without stream FIFOs */
	uint64_t fileFifoOffset; /* 0 without per-file FIFOs */
	uint64_t size;
	static WindowLayout of(const WindowGeometry &geometry);
};

/* Load-acquire / store-release on a __u32 that lives in shared memory. */
inline uint32_t loadAcquire(const uint32_t &v)
{
	return std::atomic_ref<const uint32_t>(v).load(std::memory_order_acquire);
}
inline void storeRelease(uint32_t &v, uint32_t value)
{
	std::atomic_ref<uint32_t>(v).store(value, std::memory_order_release);
}

class Window
{
public:
	/* Creates a memfd-backed window, laid out and initialised as a driver would (the in-process case). */
	static int create(const WindowGeometry &geometry, std::string_view name, uint32_t deviceId, Window &out);
	/* Maps an existing window (e.g. a kshim channel fd) and validates its registers. */
	static int attach(UniqueFD fd, Window &out);

	Window() = default;
	Window(Window &&other) noexcept;
	Window &operator=(Window &&other) noexcept;
	Window(const Window &) = delete;
	Window &operator=(const Window &) = delete;
	~Window();

	bool isValid() const { return base_ != nullptr; }
	int fd() const { return fd_.get(); }
	size_t size() const { return size_; }

	devemu_regs &regs() const { return *reinterpret_cast<devemu_regs *>(base_); }
	/* The device-wide shadow: the model's status words. */
	devemu_shadow &shadow() const { return *reinterpret_cast<devemu_shadow *>(base_ + DEVEMU_SHADOW_OFFSET); }
	/* The shadow of one open file: poll readiness, bytes readable and writable. */
	devemu_shadow_file &fileShadow(uint32_t fh) const
	{
		return reinterpret_cast<devemu_shadow_file *>(base_ + DEVEMU_FILES_OFFSET)[fh];
	}
	uint32_t queueDepth() const { return geometry_.queueDepth; }
	/* The submission ring holds each tag's request plus one CANCEL per tag. */
	uint32_t sqEntries() const { return 2 * geometry_.queueDepth; }
	uint32_t slotSize() const { return geometry_.slotSize; }

	devemu_ring &sq() const { return *reinterpret_cast<devemu_ring *>(base_ + layout_.sqOffset); }
	devemu_ring &cq() const { return *reinterpret_cast<devemu_ring *>(base_ + layout_.cqOffset); }
	devemu_sqe &sqe(uint32_t index) const
	{
		return reinterpret_cast<devemu_sqe *>(base_ + layout_.sqOffset +
						      DEVEMU_RING_ENTRIES_OFFSET)[index & (sqEntries() - 1)];
	}
	devemu_cqe &cqe(uint32_t index) const
	{
		return reinterpret_cast<devemu_cqe *>(base_ + layout_.cqOffset +
						      DEVEMU_RING_ENTRIES_OFFSET)[index & (geometry_.queueDepth - 1)];
	}
	/* The data slot of a tag; the caller has checked tag < queueDepth(). */
	std::span<std::byte> slot(uint32_t tag) const
	{
		return { reinterpret_cast<std::byte *>(base_ + layout_.dataOffset + uint64_t(tag) * geometry_.slotSize),
			 geometry_.slotSize };
	}

	/* Stream FIFOs (size 0: none). */
	uint32_t rxFifoSize() const { return geometry_.rxFifoSize; }
	uint32_t txFifoSize() const { return geometry_.txFifoSize; }
	devemu_fifo &rxFifo() const { return *reinterpret_cast<devemu_fifo *>(base_ + layout_.fifoOffset); }
	devemu_fifo &txFifo() const
	{
		return *reinterpret_cast<devemu_fifo *>(base_ + layout_.fifoOffset + DEVEMU_FIFO_CTRL_SIZE);
	}
	std::span<std::byte> rxFifoData() const
	{
		return { reinterpret_cast<std::byte *>(base_ + layout_.fifoOffset + DEVEMU_WINDOW_PAGE), geometry_.rxFifoSize };
	}
	std::span<std::byte> txFifoData() const
	{
		return { reinterpret_cast<std::byte *>(base_ + layout_.fifoOffset + DEVEMU_WINDOW_PAGE + geometry_.rxFifoSize),
			 geometry_.txFifoSize };
	}

	/* Per-file receive FIFOs (count 0: none): FIFO fh serves the file with that handle. */
	uint32_t fileFifoCount() const { return geometry_.fileFifoCount; }
	uint32_t fileFifoSize() const { return geometry_.fileFifoSize; }
	devemu_fifo &fileFifo(uint32_t fh) const
	{
		return *reinterpret_cast<devemu_fifo *>(base_ + layout_.fileFifoOffset +
							uint64_t(fh) * DEVEMU_FIFO_CTRL_SIZE);
	}
	std::span<std::byte> fileFifoData(uint32_t fh) const
	{
		return { reinterpret_cast<std::byte *>(base_ + layout_.fileFifoOffset +
						       devemu_window_file_fifo_data(geometry_.fileFifoCount) +
						       uint64_t(fh) * geometry_.fileFifoSize),
			 geometry_.fileFifoSize };
	}

private:
	int map(UniqueFD fd, size_t size);
	void setLayout(const WindowGeometry &geometry, const WindowLayout &layout);

	UniqueFD fd_;
	uint8_t *base_ = nullptr;
	size_t size_ = 0;
	WindowGeometry geometry_{ 0, 0, 0, 0, 0, 0 };
	WindowLayout layout_{};
};

/* Seqlock writer for a shadow block: odd while the fields are being updated. */
template<typename Block, typename Fn>
void seqlockWrite(Block &block, Fn &&update)
{
	std::atomic_ref<uint32_t> seq(block.seq);
	uint32_t s = seq.load(std::memory_order_relaxed);
	seq.store(s + 1, std::memory_order_relaxed);
	std::atomic_thread_fence(std::memory_order_release);
	update(block);
	seq.store(s + 2, std::memory_order_release);
}

/* Seqlock reader: copies the block until a stable snapshot is seen. */
template<typename Block>
Block seqlockRead(const Block &block)
{
	std::atomic_ref<const uint32_t> seq(block.seq);
	for (;;) {
		uint32_t before = seq.load(std::memory_order_acquire);
		if (before & 1)
			continue;
		Block copy;
		std::memcpy(static_cast<void *>(&copy), &block, sizeof(Block));
		std::atomic_thread_fence(std::memory_order_acquire);
		if (seq.load(std::memory_order_relaxed) == before)
			return copy;
	}
}

} // namespace devemu
