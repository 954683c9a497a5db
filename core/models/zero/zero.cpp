// SPDX-License-Identifier: MIT
// zero: like the kernel's /dev/zero; reads return zeros, writes are discarded. The benchmark model.
#include "devemu/model_registry.h"

#include <poll.h>

namespace devemu {

namespace {

class ZeroModel final : public Model
{
public:
	/* A stream both ways: reads are served from the receive FIFO, writes posted to the transmit FIFO;
	 * the zeros in the ring stay zeros, so a refill writes nothing. */
	StreamSpec stream() const override
	{
		return { .rx = true, .tx = true, .lazyTx = true, .constantRx = true, .onDemandRx = true };
	}
	size_t produce(std::span<std::byte> out) override
	{
		std::fill(out.begin(), out.end(), std::byte{ 0 });
		return out.size();
	}
	size_t consume(std::span<const std::byte> in) override { return in.size(); }
	uint32_t poll(const OpenFile &) override { return POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM; }
};

} // namespace

void registerZeroModel(ModelRegistry &registry)
{
	registry.add({ "zero", "like /dev/zero: reads return zeros, writes are discarded", "",
		       [](ModelOptions &, DeviceContext &) -> std::unique_ptr<Model> {
			       return std::make_unique<ZeroModel>();
		       } });
}

} // namespace devemu
