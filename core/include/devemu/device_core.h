// SPDX-License-Identifier: MIT
// DeviceCore: the core side of a device window: consumes requests, runs the model, parks and wakes, completes.
#pragma once

#include "devemu/model.h"
#include "devemu/window.h"

#include <array>
#include <chrono>
#include <deque>
#include <optional>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

namespace devemu {

/* Per-operation counters of one device (what devemuctl stats and DEVEMU_IOC_COUNTERS report). */
struct DeviceStats {
	/* Index of an opcode in the per-operation arrays: its value - 1 (the uapi list is dense from 1). */
	enum Op {
		Open = DEVEMU_OP_OPEN - 1,
		Release = DEVEMU_OP_RELEASE - 1,
		Read = DEVEMU_OP_READ - 1,
		Write = DEVEMU_OP_WRITE - 1,
		Ioctl = DEVEMU_OP_IOCTL - 1,
		Poll = DEVEMU_OP_POLL - 1,
		Cancel = DEVEMU_OP_CANCEL - 1,
		OpCount = DEVEMU_OP_COUNT
	};
	/* Latency buckets: [0] < 1 us, [i] < 2^i us, the last one everything slower. */
	static constexpr size_t kLatencyBuckets = 24;
	/* The opcode's name from the uapi list ("read"), "?" for an index out of range. */
	static const char *opName(Op op);
	/* Whether opcode is one of the uapi's, and its index. */
	static constexpr bool isOpcode(unsigned opcode) { return opcode >= 1 && opcode <= DEVEMU_OP_COUNT; }
	static constexpr Op opOf(unsigned opcode) { return static_cast<Op>(opcode - 1); }
	std::array<uint64_t, OpCount> requests{}; /* calls served from the kernel shim's FIFOs included */
	std::array<uint64_t, OpCount> inKernel{}; /* of those, served from the FIFOs: no latency entry */
	std::array<uint64_t, OpCount> errors{};
	std::array<std::array<uint64_t, kLatencyBuckets>, OpCount> latency{};
	uint64_t bytesIn = 0;
	uint64_t bytesOut = 0;
	uint64_t opens = 0;
	uint64_t parked = 0; /* requests that had to wait */
	uint64_t cancelled = 0;
	uint64_t protocolErrors = 0; /* malformed entries from the driver */
};
static_assert(DeviceStats::Cancel + 1 == DeviceStats::OpCount,
	      "each opcode of the uapi list needs its DeviceStats::Op");

/* An injected fault: the next count requests of an operation fail, wait, or are cut short. */
struct FaultSpec {
	DeviceStats::Op op = DeviceStats::Read;
	int error = 0; /* > 0: answer -error */
	std::chrono::milliseconds delay{ 0 }; /* > 0: hold the request this long first */
	std::optional<uint32_t> shortLen; /* read/write: move at most this many bytes */
	int64_t count = -1; /* requests left to hit; -1: until cleared */
	uint64_t hits = 0;
};

/*
 * One device: its model, and the windows attached to it, through which drivers
 * reach it. Usually one window; a device exposed through CUSE and the kernel
 * shim at once has two, and both see the same model state.
 */
class DeviceCore final : public DeviceContext
{
public:
	using InterruptHandler = std::function<void(uint32_t isr)>;

	explicit DeviceCore(Strand strand, std::string name);
	/* Shorthand: a core with window attached as window 0. */
	DeviceCore(Strand strand, std::string name, Window &window);
	~DeviceCore() override;

	void setModel(std::unique_ptr<Model> model)
	{
		model_ = std::move(model);
		stream_ = model_ ? model_->stream() : StreamSpec{};
	}
	Model *model() const { return model_.get(); }

	/* Attaches a window (it must stay until detached); returns its index. */
	unsigned attachWindow(Window &window, InterruptHandler interrupt = {});
	/* Detaches a window: its open files are released and its parked requests dropped (the driver is gone). */
	void detachWindow(unsigned windowIndex);
	/* Doorbell: consume every submitted entry. Runs on the strand; re-entrant calls are folded. */
	void doorbell();
	/*
	 * Busy-poll: keep consuming submissions without asking drivers for a
	 * doorbell (NEED_KICK stays clear) until budget passes with no work, then
	 * go back to sleeping. Trades a CPU for the doorbell's wake-up cost.
	 */
	void busyPoll(std::chrono::microseconds budget);
	/* The interrupt line of window 0 (or of the given window). */
	void setInterruptHandler(InterruptHandler handler, unsigned windowIndex = 0)
	{
		windows_.at(windowIndex).interrupt = std::move(handler);
	}
	/* Ends every parked request with err (a negative errno) and refuses new requests from now on. */
	void stop(int err);
	bool stopped() const { return stopError_ != 0; }
	int stopError() const { return stopError_; }

	/* The statistics, with the calls the kernel shim served from the stream FIFOs counted in. */
	const DeviceStats &stats();

	/*
	 * Fault injection (devemuctl fault): one fault per operation, replacing any earlier one. While a
	 * read or write fault is armed, a stream FIFO of that direction is diverted: the driver sends its
	 * calls as requests, which the fault can then hit (uapi: Diverted).
	 */
	void setFault(const FaultSpec &fault);
	void clearFaults();
	const std::vector<FaultSpec> &faults() const { return faults_; }
	/* The model's control side (devemuctl inject). Returns 0 or -errno, with a reply for the user. */
	int inject(const std::vector<std::string> &args, std::string &reply);
	size_t openFiles() const;
	size_t parkedRequests() const { return parked_.size(); }
	/* Calls waiting for the device: parked requests, and callers the kernel shim holds on its FIFOs. */
	size_t waitingCalls() const;

	/* DeviceContext */
	void notify(uint32_t pulse = 0) override;
	const Strand &strand() const override { return strand_; }
	const std::string &name() const override { return name_; }
	void setStatusWord(unsigned index, uint32_t value) override;
	size_t discardStream() override;
	size_t discardStreamTx() override;
	size_t streamTxPending() const override;
	void divertStream(bool rx, bool tx) override;
	void streamPollingReads(bool on) override;
	size_t fileStreamBytes(const OpenFile &f) const override;
	size_t discardFileStream(OpenFile &f) override;
	void divertFileStream(OpenFile &f, bool on) override;

private:
	/* The core's side of one per-file receive FIFO (uapi: Per-file receive FIFOs), by fh. */
	struct FileFifo {
		uint32_t tail = 0; /* the core's index */
		uint32_t headSeen = 0; /* the driver's head at the last look: bytes read, for the counters */
		uint32_t skipped = 0; /* bytes the head passes that were not read (taken back, dropped) */
		uint32_t discard = 0; /* the discard last published */
		uint32_t callsSeen = 0; /* the driver's call count, counted in */
		uint32_t divert = 0; /* the divert word last published */
		bool modelDivert = false; /* divertFileStream() */
	};
	struct AttachedWindow {
		Window *window = nullptr; /* null once removed */
		InterruptHandler interrupt;
		std::vector<std::unique_ptr<OpenFile>> files; /* by fh */
		std::vector<uint8_t> inflight; /* per tag: 1 while the core owns it */
		std::vector<std::chrono::steady_clock::time_point> started; /* per tag */
		size_t openCount = 0;
		uint32_t pendingIsr = 0;
		/* Stream FIFOs in use on this window (DEVEMU_F_STREAM accepted), and the core's own indices. */
		bool streamRx = false;
		bool streamTx = false;
		uint32_t rxTail = 0;
		uint64_t rxProduced = 0; /* bytes produce() wrote into the receive FIFO (StreamSpec::constantRx) */
		uint32_t rxHeadSeen = 0; /* the driver's head at the last look: bytes read, for the counters */
		uint32_t rxSkipped = 0; /* bytes the head passes that are not reads (cleared, or read by request) */
		uint32_t txHead = 0;
		uint32_t rxCallsSeen = 0, txCallsSeen = 0; /* the driver's FIFO call counts, counted in */
		/* A loop (the window's rx.capacity): the adjust last published (uapi: Loops). */
		bool loop = false;
		uint32_t adjust = 0;
		uint32_t rxDiscard = 0; /* the rx.discard last published */
		uint32_t rxDivert = 0, txDivert = 0; /* the divert words last published */
		uint32_t rxNoWait = 0; /* the rx.nowait last published */
		/* Per-file receive FIFOs in use on this window (DEVEMU_F_FILE_STREAM accepted); empty: none. */
		std::vector<FileFifo> fileFifos;
	};
	struct Request {
		unsigned windowIndex;
		devemu_sqe sqe;
		uint32_t progress = 0; /* WRITE: bytes accepted so far */
	};

	void dispatch();
	void consume(unsigned aw);
	void process(unsigned windowIndex, const devemu_sqe &sqe, bool faultsApplied = false);
	/* Applies an injected fault; returns true when the request was answered or deferred. */
	bool applyFault(unsigned windowIndex, devemu_sqe &sqe);
	/* Tries a READ/WRITE/IOCTL once; returns true when it completed (or was answered -EAGAIN). */
	bool attempt(Request &req);
	bool attemptIoctl(Request &req, OpenFile &file);
	bool coreIoctl(IoctlCall &call, unsigned windowIndex, OpenFile &file, IoctlResult &result);
	void complete(unsigned windowIndex, const devemu_sqe &sqe, int32_t result, uint32_t aux = 0,
		      uint16_t flags = 0);
	void runWakeups();
	/* Moves bytes between the model and the window's stream FIFOs, then asks for kicks at the watermarks. */
	void pumpStreams(AttachedWindow &aw);
	bool pumpRx(AttachedWindow &aw);
	bool pumpTx(AttachedWindow &aw);
	/* Counts the bytes the driver's receive head moved past since the last look, as read (bytesOut). */
	void countRxHead(AttachedWindow &aw, uint32_t head);
	/* A loop's held + rx tail - tx head (uapi: Loops), and its publication when it changed. */
	uint32_t loopAdjust(const AttachedWindow &aw) const;
	void publishLoopAdjust(AttachedWindow &aw);
	/* The bytes in a window's receive and transmit FIFO (0 when its indices are out of range). */
	static uint32_t rxFifoBytes(const AttachedWindow &aw);
	static uint32_t txFifoBytes(const AttachedWindow &aw);
	/* A loop's bytes in a window's FIFOs, or in every loop window's (nullptr). */
	size_t loopFifoBytes(const AttachedWindow *only = nullptr) const;
	/* Refill the receive FIFO when half empty: a reader never waits for a model that keeps up. */
	static uint32_t rxWatermark(const Window &w) { return w.rxFifoSize() / 2; }
	/* Drain the transmit FIFO at once, or when half full for a model whose written bytes may wait. */
	uint32_t txWatermark(const Window &w) const { return stream_.lazyTx ? w.txFifoSize() / 2 : 1; }
	/* The fault armed on an operation, or end(). */
	std::vector<FaultSpec>::iterator findFault(DeviceStats::Op op);
	/* Tells the driver which FIFO directions go to requests (an armed fault's, the model's), and rx.nowait. */
	void publishDivert();
	/* A read by request on a window with a receive FIFO: the FIFO's bytes first, then (a loop) the model's. */
	ssize_t streamRead(AttachedWindow &aw, OpenFile &file, std::span<std::byte> out);
	/* The model's read and write, through produce()/consume() for a streaming model. */
	ssize_t modelRead(OpenFile &file, std::span<std::byte> out);
	ssize_t modelWrite(OpenFile &file, std::span<const std::byte> in);
	void publishShadows();

	/* Per-file receive FIFOs (file_streams.cpp). */
	void attachFileFifos(AttachedWindow &aw);
	/* A new file on fh: whatever the FIFO still holds from the fh's last file is dropped. */
	void openFileFifo(AttachedWindow &aw, uint32_t fh);
	/* Before a read() or ioctl() of the file: its FIFO's records back to the head of its queue. */
	void takeBackFileFifo(AttachedWindow &aw, OpenFile &file);
	/* Moves each open file's records into its FIFO, then asks for kicks at the watermark. */
	void pumpFileStreams(AttachedWindow &aw);
	/* Fills one file's FIFO; returns true when it is left full with the model having more. */
	bool pumpFileFifo(AttachedWindow &aw, OpenFile &file);
	void countFileHead(FileFifo &ff, uint32_t head);
	/* The driver's head of a file's FIFO with a discard it has not acted on yet applied. */
	uint32_t fileFifoHead(const AttachedWindow &aw, uint32_t fh) const;
	/* Whether the file's reads are served from its FIFO (it has one, and it is not diverted). */
	bool fileFifoServes(const AttachedWindow &aw, uint32_t fh) const;
	void publishFileDivert(AttachedWindow &aw, uint32_t fh);
	void countFileFifoCalls(AttachedWindow &aw);
	size_t fileFifoWaiters(const AttachedWindow &aw) const;
	/* The window and FIFO of an open file, or nulls. */
	std::pair<AttachedWindow *, FileFifo *> findFileFifo(const OpenFile &file);
	std::pair<const AttachedWindow *, const FileFifo *> findFileFifo(const OpenFile &file) const;

	void protocolError(const devemu_sqe &sqe, const char *what);

	Strand strand_;
	std::string name_;
	std::unique_ptr<Model> model_;
	StreamSpec stream_;
	std::vector<AttachedWindow> windows_;
	std::list<Request> parked_;
	struct Delayed {
		unsigned windowIndex;
		devemu_sqe sqe;
		std::unique_ptr<asio::steady_timer> timer;
	};
	std::list<Delayed> delayed_;
	std::deque<std::pair<unsigned, devemu_sqe>> released_; /* delays that expired, to process */
	std::vector<FaultSpec> faults_;
	DeviceStats stats_;
	bool modelDivertRx_ = false, modelDivertTx_ = false; /* divertStream() */
	bool pollingReads_ = false; /* streamPollingReads() */

	bool inDispatch_ = false;
	bool spinning_ = false;
	bool kicked_ = false;
	bool dirty_ = false; /* model state changed: retry parked requests */
	bool shadowDirty_ = false;
	uint32_t pulse_ = 0;
	int stopError_ = 0;
	std::vector<uint32_t> warnedIoctls_;
};

} // namespace devemu
