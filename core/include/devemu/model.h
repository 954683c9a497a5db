// SPDX-License-Identifier: MIT
// The device-model API: what a model implements (Model) and what the core offers it (DeviceContext, IoctlCall).
#pragma once

#include "devemu/asio.h"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace devemu {

/* Per-open state a model attaches to an OpenFile. */
struct FileState {
	virtual ~FileState() = default;
};

struct OpenFile {
	uint32_t fh = 0; /* handle the core gave this open, < DEVEMU_MAX_FILES */
	uint32_t flags = 0; /* O_* flags: from open, refreshed by every read and write (fcntl) */
	/* The caller of the current request is a 32-bit task (DEVEMU_SQE_F_COMPAT): set for each open, read,
	 * write and ioctl, as far as the transport tells (CUSE: ioctls only). */
	bool compat = false;
	/* The opener (set at open). */
	pid_t pid = 0;
	uid_t uid = 0;
	gid_t gid = 0;
	/*
	 * The caller of the current request (set for each open, read, write and ioctl), who may not be
	 * the opener (a file passed on, inherited or shared): its pid as the daemon sees it (CUSE and
	 * FUSE: the calling thread's), and its capabilities where the driver reports them (bit N:
	 * capability N in the initial user namespace; the kernel shim does). Ask callerCapable()
	 * (devemu/caller.h) rather than these.
	 */
	pid_t callerPid = 0;
	std::optional<uint64_t> callerCaps;
	std::unique_ptr<FileState> state;

	template<typename T>
	T &stateAs() const
	{
		return static_cast<T &>(*state);
	}
};

/* A range of the caller's memory, by address (never dereferenced by the core). */
struct UserRange {
	uint64_t addr;
	uint64_t len;
};

/* What a model's ioctl handler returns. Build it through IoctlCall. */
struct IoctlResult {
	enum class Kind { Done, Retry, WouldBlock };
	Kind kind = Kind::Done;
	int ret = 0; /* Done: the ioctl's return value or -errno */

	static IoctlResult wouldBlock() { return { Kind::WouldBlock, 0 }; }
	static IoctlResult error(int negErrno) { return { Kind::Done, negErrno }; }
};

/*
 * One round of an ioctl. Linux ioctls come in two kinds: those whose argument
 * size is encoded in the command (_IOR/_IOW/_IOWR) and those whose argument
 * holds pointers or has no encoded size (I2C_RDWR, SPI_IOC_MESSAGE, TCGETS).
 * Both are handled the same way: the model asks for the caller's memory it
 * needs with readUser()/writeUser(), in the same order on every round, and
 * finishes with done(). When a round does not carry all of it, done() turns
 * into a retry: the driver fetches the ranges and calls the handler again
 * (FUSE_IOCTL_RETRY on CUSE, copy_from_user on the kernel shim). A handler must
 * not change device state before every readUser() it needs has succeeded.
 */
class IoctlCall
{
public:
	/* restricted: the driver cannot retry; it carries exactly _IOC_SIZE(cmd) bytes at arg (FUSE). */
	IoctlCall(uint32_t cmd, uint64_t arg, std::span<const std::byte> in, size_t outRoom, bool restricted);

	uint32_t cmd() const { return cmd_; }
	uint64_t arg() const { return arg_; }
	bool restricted() const { return restricted_; }
	/* The caller is a 32-bit task: pointers are 32 bits wide, structures have their 32-bit layout. */
	void setCompat(bool compat) { compat_ = compat; }
	bool compat() const { return compat_; }

	/* The caller's bytes at [addr, addr+len), or nullopt when this round does not carry them yet. */
	std::optional<std::span<const std::byte>> readUser(uint64_t addr, size_t len);
	/* clang-format 14 cannot lay out requires-clauses. */
	// clang-format off
	template<typename T>
		requires std::is_trivially_copyable_v<T>
	std::optional<T> readUser(uint64_t addr)
	// clang-format on
	{
		auto bytes = readUser(addr, sizeof(T));
		if (!bytes)
			return std::nullopt;
		T value;
		std::memcpy(&value, bytes->data(), sizeof(T));
		return value;
	}
	template<typename T>
	std::optional<T> argIn()
	{
		return readUser<T>(arg_);
	}

	/* Queues bytes for the caller's memory at addr; false when this round cannot carry them yet. */
	bool writeUser(uint64_t addr, std::span<const std::byte> data);
	// clang-format off
	template<typename T>
		requires std::is_trivially_copyable_v<T> && (!std::is_convertible_v<T, std::span<const std::byte>>)
	bool writeUser(uint64_t addr, const T &value)
	// clang-format on
	{
		return writeUser(addr, std::as_bytes(std::span(&value, 1)));
	}

	/*
	 * Whether writeUser(addr, len bytes) would be carried by this round: lets a
	 * handler whose work has side effects (forwarding to a real device) ask
	 * for the output room first, so the work runs once, in the final round.
	 */
	bool canWriteUser(uint64_t addr, size_t len) const;

	/* Finishes with ret; becomes a retry when some requested memory was not carried. */
	IoctlResult done(int ret = 0);
	/* Convenience: *(T *)arg = value; return 0. */
	template<typename T>
	IoctlResult replyArg(const T &value)
	{
		writeUser(arg_, value);
		return done(0);
	}

	/* For the core: what the round produced. */
	bool needsRetry() const { return missing_; }
	const std::vector<UserRange> &inRanges() const { return inRanges_; }
	const std::vector<UserRange> &outRanges() const { return outRanges_; }
	std::span<const std::byte> output() const { return out_; }

private:
	bool rangeAllowed(uint64_t addr, size_t len, bool output) const;

	uint32_t cmd_;
	uint64_t arg_;
	std::span<const std::byte> in_;
	size_t outRoom_;
	bool restricted_;
	bool compat_ = false;
	size_t inCursor_ = 0;
	bool missing_ = false;
	bool unreachable_ = false;
	std::vector<UserRange> inRanges_;
	std::vector<UserRange> outRanges_;
	std::vector<std::byte> out_;
};

/* What the core offers a model. */
class DeviceContext
{
public:
	virtual ~DeviceContext() = default;
	/*
	 * The model's state changed: the core retries parked requests and
	 * republishes poll readiness. pulse names events that happened even if
	 * the readiness mask did not change (POLLIN: new data), so that
	 * edge-triggered waiters see each arrival.
	 */
	virtual void notify(uint32_t pulse = 0) = 0;
	/* The device's strand: timers and deferred work of the model run here. */
	virtual const Strand &strand() const = 0;
	virtual const std::string &name() const = 0;
	/* Publishes a model-defined status word in the shadow registers (index < 12). */
	virtual void setStatusWord(unsigned index, uint32_t value) = 0;
	/*
	 * Drops what the receive FIFOs hold (a loop's clear, a tty's input flush); returns the bytes
	 * dropped. A loop's transmit FIFOs are first taken into the model (consume()). The model then
	 * drops its own.
	 */
	virtual size_t discardStream() { return 0; }
	/* Drops what waits in the transmit FIFOs, not yet consume()d (a tty's output flush). */
	virtual size_t discardStreamTx() { return 0; }
	/* Bytes written into the transmit FIFOs and not yet consume()d (a tty's TIOCOUTQ, tcdrain). */
	virtual size_t streamTxPending() const { return 0; }
	/*
	 * A streaming model whose state asks for its file's calls (a tty in canonical mode, a hung-up
	 * file): while rx (tx) is diverted, reads (writes) go to read() (write()) with their file
	 * instead of produce() (consume()), the kernel shim sends them as requests, and poll readiness
	 * comes from the model. A diverted read gets what the receive FIFO still holds first, as
	 * the pending bytes of n_tty's buffer when ICANON is switched on. Takes effect when the core
	 * next runs (the model's notify(), or the end of the call it is in); default: neither.
	 */
	virtual void divertStream(bool rx, bool tx)
	{
		(void)rx;
		(void)tx;
	}
	/*
	 * Reads of an empty stream return 0 at once instead of waiting (a tty's polling read, VMIN 0 and
	 * VTIME 0: pyserial's setting), in the kernel shim and on the request path alike. Not for loops.
	 */
	virtual void streamPollingReads(bool on) { (void)on; }
	/*
	 * A model with a queue per open file (StreamSpec::fileRecord, evdev): the bytes the file's own
	 * receive FIFO holds now, produceFile()d and not yet read (part of the file's queue).
	 */
	virtual size_t fileStreamBytes(const OpenFile &f) const
	{
		(void)f;
		return 0;
	}
	/* Drops what the file's receive FIFO holds (a full queue's SYN_DROPPED); returns the bytes dropped. */
	virtual size_t discardFileStream(OpenFile &f)
	{
		(void)f;
		return 0;
	}
	/*
	 * While on, the file's reads go to read() by request (a revoked evdev file, which reads
	 * ENODEV), and its poll readiness comes from poll() alone. Off when the file opens.
	 */
	virtual void divertFileStream(OpenFile &f, bool on)
	{
		(void)f;
		(void)on;
	}
};

/*
 * What a streaming model declares (Model::stream()): its reads and writes are
 * byte streams shared by every open file, like a pipe's, so the core can move
 * them through the window's stream FIFOs (the kernel shim then serves read()
 * and write() without a request) and serves request-path reads and writes
 * (CUSE, FUSE, fifo=off) from the same two calls, produce() and consume().
 */
struct StreamSpec {
	bool rx = false; /* reads come from produce() */
	bool tx = false; /* writes go to consume() */
	uint32_t record = 1; /* the unit read and written, in bytes (24: struct input_event) */
	/* Written bytes may wait in the FIFO until half full before the core is woken (zero: they are
	 * discarded anyway); otherwise every write that finds the core asleep wakes it. */
	bool lazyTx = false;
	/* produce() always gives the same bytes (zero): once every byte of the receive FIFO came from it,
	 * the core publishes the ring's bytes again instead of asking for them anew. */
	bool constantRx = false;
	/* produce() makes bytes on demand and never runs dry (zero, rng): bytes held in one driver's
	 * FIFO take nothing from another driver's readers, so the device streams with two drivers. */
	bool onDemandRx = false;
	/* The FIFOs' size in bytes (a power of two, 4 KiB .. 4 MiB), 0: the transport's default.
	 * A tty keeps its FIFOs small: what waits in them is queued output and unread input. */
	uint32_t fifoSize = 0;
	/*
	 * Non-zero: a loop, as a pipe is: what is written is read back in order, and at most this
	 * many bytes are in flight (the model's buffered() plus the bytes in the FIFOs); a write of
	 * at most this many bytes is atomic. The core and the kernel shim keep the count, so a read
	 * right after a write sees it and FIONREAD and poll() count what is on its way.
	 */
	uint32_t loopCapacity = 0;
	/*
	 * Non-zero: every open file has a queue of its own (evdev's clients) of records this many bytes
	 * long, in the native (64-bit) layout. The core moves them into the file's own receive FIFO where
	 * the driver has one (the kernel shim then serves the file's read() without a request) with
	 * produceFile(), and hands them back with unproduceFile() before any read() or ioctl() of the
	 * file, so that those always see the file's whole queue. Independent of rx/tx above.
	 */
	uint32_t fileRecord = 0;
	/* A record's size for a 32-bit caller, 0: the same (evdev: 16); the kernel shim's FIONREAD counts in it. */
	uint32_t fileRecordCompat = 0;
	/* The per-file FIFOs' size (a power of two, 4 KiB .. 64 KiB); 0: 4 KiB. */
	uint32_t fileFifoSize = 0;
};

/*
 * A device model. Operations are non-blocking: a read/write that cannot
 * proceed now returns -EAGAIN; the core then parks the request, or answers
 * -EAGAIN to an O_NONBLOCK caller, and retries it after the model calls
 * DeviceContext::notify(). An ioctl that must wait returns
 * IoctlResult::wouldBlock() and is parked even for O_NONBLOCK files (as the
 * kernel's tcdrain does); a model that wants EAGAIN there returns it itself.
 * Blocking, wake-ups, O_NONBLOCK and cancellation live in the core, never in
 * a model. All calls run on the device's strand.
 */
class Model
{
public:
	/* Releases only what start() acquired (a model that never started holds nothing). */
	virtual ~Model() = default;

	/*
	 * Acquires what the device needs to run: sockets, ptys, files, timers,
	 * threads. A factory only parses and checks the options and acquires
	 * nothing, so options can be checked by building a model that is never
	 * started (QEMU's property parsing before realize). Called once, when the
	 * device starts, before its first request. Returns 0, or -errno with what
	 * failed in error.
	 */
	virtual int start(std::string &error)
	{
		(void)error;
		return 0;
	}

	virtual int open(OpenFile &) { return 0; }
	virtual void release(OpenFile &) {}
	/* Bytes read (> 0, or 0 for end of file), or -errno; -EAGAIN to block. */
	virtual ssize_t read(OpenFile &, std::span<std::byte>) { return -EINVAL; }
	/* Bytes accepted (a short count is retried by the core for blocking callers), or -errno. */
	virtual ssize_t write(OpenFile &, std::span<const std::byte>) { return -EINVAL; }
	virtual IoctlResult ioctl(OpenFile &, IoctlCall &) { return IoctlResult::error(-ENOTTY); }
	/* A streaming model: see StreamSpec. The default streams nothing. */
	virtual StreamSpec stream() const { return {}; }
	/*
	 * rx: the device's next output bytes into out (whole records); returns the count, 0 when it
	 * has none now (a reader then waits for notify()). Not called with files' O_* state: the
	 * stream is the device's.
	 */
	virtual size_t produce(std::span<std::byte> out)
	{
		(void)out;
		return 0;
	}
	/* tx: takes written bytes (whole records); returns the count taken, less when full now. */
	virtual size_t consume(std::span<const std::byte> in) { return in.size(); }
	/*
	 * StreamSpec::fileRecord: the file's next records into out (whole records it may read now, oldest
	 * first); returns the bytes, 0 when it has none. They leave the file's queue for its FIFO.
	 */
	virtual size_t produceFile(OpenFile &f, std::span<std::byte> out)
	{
		(void)f;
		(void)out;
		return 0;
	}
	/* Records produceFile() gave that the file has not read, oldest first: they go back to the head of its queue. */
	virtual void unproduceFile(OpenFile &f, std::span<const std::byte> records)
	{
		(void)f;
		(void)records;
	}
	/* A loop's bytes taken by consume() (or injected) and not yet produce()d. */
	virtual size_t buffered() const { return 0; }
	/* Current poll mask (POLLIN, POLLOUT, POLLPRI, POLLERR, POLLHUP) of an open file. */
	virtual uint32_t poll(const OpenFile &) = 0;
	/* Bytes a read would return now (FIONREAD and the shadow registers). */
	virtual uint32_t readable(const OpenFile &) { return 0; }
	/* Bytes a write would accept now. */
	virtual uint32_t writable(const OpenFile &) { return 0; }
	/* Bytes the model discarded (reported by DEVEMU_IOC_COUNTERS). */
	virtual uint64_t dropped() const { return 0; }
	/*
	 * The model's control side (devemuctl inject NAME VERB ARGS...): bytes
	 * into a FIFO, a sensor value, an input event. Returns 0 with a reply for
	 * the user, or -errno with what was wrong.
	 */
	virtual int inject(const std::vector<std::string> &args, std::string &reply)
	{
		(void)args;
		reply = "this model has no inject verbs";
		return -EOPNOTSUPP;
	}
};

} // namespace devemu
