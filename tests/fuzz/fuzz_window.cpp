// SPDX-License-Identifier: MIT
// Fuzz target: the core consuming what a hostile driver puts in a device window (entries, ring indices, slot data,
// stream FIFO indices and words, loops included, per-file receive FIFOs).
#include "devemu/device_core.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/window.h"

#include "fuzz_input.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

using namespace devemu;
using devemu::fuzz::FuzzInput;

namespace {

struct FuzzModel {
	const char *model;
	ModelOptions::Pairs options;
	bool fifos = false; /* a window with 4 KiB stream FIFOs, DEVEMU_F_STREAM offered */
	uint32_t loop = 0; /* the FIFOs are a loop of this capacity (rx.capacity, as the shim sets it) */
	bool fileFifos = false; /* 4 per-file receive FIFOs of 4 KiB, DEVEMU_F_FILE_STREAM offered */
};

/* Models whose start() acquires nothing outside the process. */
const FuzzModel kModels[] = {
	{ "loopback", { { "capacity", "256" } } },
	{ "zero", {} },
	{ "rng", { { "seed", "7" } } },
	{ "i2c", {} },
	{ "evdev", { { "type", "keyboard" } } },
	{ "evdev", { { "type", "tablet" } } },
	{ "loopback", { { "capacity", "16" }, { "when_full", "drop" } } },
	{ "zero", {}, true },
	{ "rng", { { "seed", "7" } }, true },
	{ "loopback", { { "capacity", "256" } }, true, 256 },
	{ "evdev", { { "type", "keyboard" }, { "queue", "8" } }, false, 0, true },
};

/* What the driver does next, one byte each. */
enum Action : uint8_t {
	Submit, /* one 64-byte entry at the tail, then the doorbell */
	SubmitMany, /* n entries, one doorbell */
	MoveTail, /* the producer index set to anything */
	FillSlot, /* bytes into a tag's data slot */
	ConsumeCompletions, /* the driver reads the completion ring */
	MoveCompletionHead, /* the consumer index set to anything */
	RunLoop, /* the core's strand runs what is ready (wake-ups, timers due) */
	MoveRxHead, /* the driver's receive FIFO consumer index set to anything, then the doorbell */
	MoveTxTail, /* the driver's transmit FIFO producer index set to anything, then the doorbell */
	FillTx, /* bytes into the transmit FIFO's data */
	ScribbleFifoWords, /* record, watermark or kick of either FIFO set to anything, then the doorbell */
	ScribbleFileFifo, /* a per-file FIFO's head, calls, waiters, record or kick set to anything, then the doorbell */
	Actions,
};

void publish(Window &w, const devemu_sqe &sqe)
{
	devemu_ring &sq = w.sq();
	w.sqe(sq.tail) = sqe;
	storeRelease(sq.tail, sq.tail + 1);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet = (setLogLevel(LogLevel::Error), true);
	(void)quiet;
	FuzzInput in(data, size);
	const FuzzModel &fm = kModels[in.take<uint8_t>() % std::size(kModels)];

	Window window;
	/* A small ring and slot: the edges are a few entries and bytes away. */
	uint32_t fifo = fm.fifos ? DEVEMU_MIN_FIFO_SIZE : 0;
	uint32_t files = fm.fileFifos ? 4 : 0;
	if (Window::create(WindowGeometry{ 8, DEVEMU_WINDOW_PAGE, fifo, fifo, files, files ? DEVEMU_MIN_FIFO_SIZE : 0 },
			   "fuzz", 1, window) < 0)
		abort();
	if (fm.fileFifos)
		window.regs().features_offered |= DEVEMU_F_FILE_STREAM | DEVEMU_F_NEED_KICK;
	if (fm.fifos) {
		window.regs().features_offered |= DEVEMU_F_STREAM | DEVEMU_F_NEED_KICK;
		window.rxFifo().capacity = fm.loop;
	}
	asio::io_context io;
	Strand strand(io.get_executor());
	{
		DeviceCore core(strand, "fuzz");
		ModelOptions opts("fuzz", fm.model, fm.options);
		auto model = ModelRegistry::builtin().find(fm.model)->factory(opts, core);
		std::string error;
		if (!model || model->start(error) != 0)
			abort();
		core.setModel(std::move(model));
		core.attachWindow(window, [](uint32_t) {});

		for (int steps = 0; !in.empty() && steps < 256; steps++) {
			switch (in.take<uint8_t>() % Actions) {
			case Submit: {
				devemu_sqe sqe = in.take<devemu_sqe>();
				publish(window, sqe);
				core.doorbell();
				break;
			}
			case SubmitMany: {
				unsigned n = in.take<uint8_t>() % 20;
				for (unsigned i = 0; i < n; i++)
					publish(window, in.take<devemu_sqe>());
				core.doorbell();
				break;
			}
			case MoveTail:
				storeRelease(window.sq().tail, in.take<uint32_t>());
				core.doorbell();
				break;
			case FillSlot: {
				uint32_t tag = in.take<uint8_t>() % window.queueDepth();
				uint16_t at = in.take<uint16_t>() % window.slotSize();
				auto bytes = in.bytes(in.take<uint8_t>());
				auto slot = window.slot(tag).subspan(at);
				std::memcpy(slot.data(), bytes.data(), std::min(bytes.size(), slot.size()));
				break;
			}
			case ConsumeCompletions:
				storeRelease(window.cq().head, loadAcquire(window.cq().tail));
				break;
			case MoveCompletionHead:
				storeRelease(window.cq().head, in.take<uint32_t>());
				break;
			case RunLoop:
				io.poll();
				io.restart();
				break;
			case MoveRxHead:
			case MoveTxTail:
			case FillTx:
			case ScribbleFifoWords: {
				uint8_t action = in.take<uint8_t>();
				if (!fm.fifos)
					break;
				devemu_fifo &f = action & 1 ? window.txFifo() : window.rxFifo();
				uint32_t value = in.take<uint32_t>();
				switch (action % 8) {
				case 0:
					storeRelease(window.rxFifo().head, value);
					break;
				case 1:
					storeRelease(window.txFifo().tail, value);
					break;
				case 2:
				case 3: {
					auto bytes = in.bytes(in.take<uint8_t>());
					auto tx = window.txFifoData().subspan(value % window.txFifoSize());
					std::memcpy(tx.data(), bytes.data(), std::min(bytes.size(), tx.size()));
					break;
				}
				case 4:
				case 5:
					storeRelease(f.kick, value);
					break;
				case 6:
					storeRelease(f.watermark, value);
					break;
				default:
					storeRelease(f.record, value);
				}
				core.doorbell();
				break;
			}
			case ScribbleFileFifo: {
				uint8_t action = in.take<uint8_t>();
				uint32_t value = in.take<uint32_t>();
				if (!fm.fileFifos)
					break;
				devemu_fifo &f = window.fileFifo(action % files);
				uint32_t *words[] = { &f.head, &f.calls, &f.waiters, &f.record, &f.kick };
				storeRelease(*words[action / files % std::size(words)], value);
				core.doorbell();
				break;
			}
			}
		}
		core.stop(-ENODEV);
		io.poll();
		io.restart();
	}
	io.poll();
	return 0;
}
