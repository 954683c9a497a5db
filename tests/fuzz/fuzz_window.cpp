// SPDX-License-Identifier: MIT
// Fuzz target: the core consuming what a hostile driver puts in a device window (entries, ring indices, slot data).
#include "devemu/device_core.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/window.h"

#include "fuzz_input.h"

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

using namespace devemu;
using devemu::fuzz::FuzzInput;

namespace {

struct FuzzModel {
	const char *model;
	ModelOptions::Pairs options;
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
	if (Window::create(WindowGeometry{ 8, DEVEMU_WINDOW_PAGE }, "fuzz", 1, window) < 0)
		abort();
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
			}
		}
		core.stop(-ENODEV);
		io.poll();
		io.restart();
	}
	io.poll();
	return 0;
}
