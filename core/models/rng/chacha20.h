// SPDX-License-Identifier: MIT
// ChaCha20 keystream (RFC 8439), the CSPRNG behind the rng model.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace devemu {

class ChaCha20
{
public:
	ChaCha20(const std::array<uint8_t, 32> &key, const std::array<uint8_t, 12> &nonce, uint32_t counter);
	/* Fills out with the next keystream bytes. */
	void generate(std::span<std::byte> out);
	/* One 64-byte block for the current counter, then advances it. */
	void block(uint8_t out[64]);

private:
	std::array<uint32_t, 16> state_;
	std::array<uint8_t, 64> buffer_{};
	size_t used_ = 64;
};

} // namespace devemu
