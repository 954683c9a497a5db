// SPDX-License-Identifier: MIT
// rng: hwrng-style random bytes from ChaCha20, keyed from getrandom() or from a seed for reproducible tests.
#include "chacha20.h"
#include "devemu/model_registry.h"

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <poll.h>
#include <sys/random.h>

namespace devemu {

namespace {

class RngModel final : public Model
{
public:
	explicit RngModel(std::optional<uint64_t> seed) : seed_(seed) {}

	/* Keys the stream: from the seed, or from getrandom(). */
	int start(std::string &error) override
	{
		std::array<uint8_t, 32> key{};
		if (seed_) {
			for (int i = 0; i < 8; i++)
				key[i] = uint8_t(*seed_ >> (8 * i));
		} else if (getrandom(key.data(), key.size(), 0) != ssize_t(key.size())) {
			int err = errno;
			error = fmt::format("getrandom() failed: {}; give seed=N", strerror(err));
			return -err;
		}
		stream_.emplace(key, std::array<uint8_t, 12>{}, 0);
		return 0;
	}

	/* Reads are a stream: the core keeps the receive FIFO topped up ahead of readers. */
	StreamSpec stream() const override { return { .rx = true, .onDemandRx = true }; }
	size_t produce(std::span<std::byte> out) override
	{
		stream_->generate(out);
		return out.size();
	}
	/* Like /dev/hwrng, the device does not take entropy from writers. */
	ssize_t write(OpenFile &, std::span<const std::byte>) override { return -EINVAL; }
	uint32_t poll(const OpenFile &) override { return POLLIN | POLLRDNORM; }

private:
	std::optional<uint64_t> seed_;
	std::optional<ChaCha20> stream_; /* keyed by start() */
};

} // namespace

void registerRngModel(ModelRegistry &registry)
{
	registry.add({ "rng", "hwrng-style random bytes (ChaCha20 keyed from getrandom, or from seed=)",
		       "seed=N                reproducible stream from a 64-bit seed (default: getrandom)\n",
		       [](ModelOptions &opts, DeviceContext &) -> std::unique_ptr<Model> {
			       return std::make_unique<RngModel>(opts.optionalNumber("seed", 0, UINT64_MAX));
		       } });
}

} // namespace devemu
