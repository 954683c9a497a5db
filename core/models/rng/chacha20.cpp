// SPDX-License-Identifier: MIT
// ChaCha20 block function and keystream generator (RFC 8439 section 2.3).
#include "chacha20.h"

#include <algorithm>
#include <cstring>

namespace devemu {

namespace {
uint32_t load32(const uint8_t *p)
{
	return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint32_t rotl(uint32_t v, int n)
{
	return (v << n) | (v >> (32 - n));
}
void quarterRound(uint32_t &a, uint32_t &b, uint32_t &c, uint32_t &d)
{
	a += b, d ^= a, d = rotl(d, 16);
	c += d, b ^= c, b = rotl(b, 12);
	a += b, d ^= a, d = rotl(d, 8);
	c += d, b ^= c, b = rotl(b, 7);
}
} // namespace

ChaCha20::ChaCha20(const std::array<uint8_t, 32> &key, const std::array<uint8_t, 12> &nonce, uint32_t counter)
{
	state_[0] = 0x61707865;
	state_[1] = 0x3320646e;
	state_[2] = 0x79622d32;
	state_[3] = 0x6b206574;
	for (int i = 0; i < 8; i++)
		state_[4 + i] = load32(&key[4 * i]);
	state_[12] = counter;
	for (int i = 0; i < 3; i++)
		state_[13 + i] = load32(&nonce[4 * i]);
}

void ChaCha20::block(uint8_t out[64])
{
	std::array<uint32_t, 16> x = state_;
	for (int i = 0; i < 10; i++) {
		quarterRound(x[0], x[4], x[8], x[12]);
		quarterRound(x[1], x[5], x[9], x[13]);
		quarterRound(x[2], x[6], x[10], x[14]);
		quarterRound(x[3], x[7], x[11], x[15]);
		quarterRound(x[0], x[5], x[10], x[15]);
		quarterRound(x[1], x[6], x[11], x[12]);
		quarterRound(x[2], x[7], x[8], x[13]);
		quarterRound(x[3], x[4], x[9], x[14]);
	}
	for (int i = 0; i < 16; i++) {
		uint32_t v = x[i] + state_[i];
		out[4 * i] = uint8_t(v);
		out[4 * i + 1] = uint8_t(v >> 8);
		out[4 * i + 2] = uint8_t(v >> 16);
		out[4 * i + 3] = uint8_t(v >> 24);
	}
	if (++state_[12] == 0)
		state_[13]++; /* 96-bit nonce space is ours: carry into it rather than repeat */
}

void ChaCha20::generate(std::span<std::byte> out)
{
	size_t done = 0;
	while (done < out.size()) {
		if (used_ == 64) {
			block(buffer_.data());
			used_ = 0;
		}
		size_t n = std::min(out.size() - done, size_t(64) - used_);
		std::memcpy(out.data() + done, buffer_.data() + used_, n);
		used_ += n;
		done += n;
	}
}

} // namespace devemu
