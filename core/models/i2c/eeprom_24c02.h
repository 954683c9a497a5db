// SPDX-License-Identifier: MIT
// i2c: a 24C02 serial EEPROM (256 bytes, 8-byte page writes) as its I2C interface sees the bus.
#pragma once

#include "i2c_bus.h"

#include <fmt/core.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

namespace devemu {

/*
 * A 24C02: 256 bytes, 8-byte pages. A write sets the word address, then data
 * bytes fill the page buffer (the low three address bits wrap within the
 * page); STOP programs them. Reads start at the address counter and roll over
 * at 256.
 */
class Eeprom24c02 final : public I2cSlave
{
public:
	static constexpr size_t kSize = 256;
	static constexpr unsigned kPage = 8;

	explicit Eeprom24c02(uint8_t fill) { mem_.fill(fill); }

	std::unique_ptr<I2cSlave> clone() const override { return std::make_unique<Eeprom24c02>(*this); }
	const char *kind() const override { return "eeprom"; }

	void busStart() override
	{
		/* The write cycle starts only at STOP: a repeated START abandons the page buffer. */
		pageMask_ = 0;
		phase_ = Phase::Idle;
	}
	bool select(bool read) override
	{
		phase_ = read ? Phase::Reading : Phase::WordAddress;
		pageMask_ = 0;
		return true;
	}
	bool writeByte(uint8_t byte) override
	{
		if (phase_ == Phase::WordAddress) {
			counter_ = byte;
			phase_ = Phase::Data;
			return true;
		}
		unsigned slot = counter_ % kPage;
		pageBase_ = counter_ & ~(kPage - 1);
		page_[slot] = byte;
		pageMask_ |= 1u << slot;
		counter_ = static_cast<uint8_t>(pageBase_ | ((counter_ + 1) % kPage));
		return true;
	}
	uint8_t readByte() override
	{
		uint8_t v = mem_[counter_];
		counter_ = static_cast<uint8_t>(counter_ + 1);
		return v;
	}
	void busStop() override
	{
		if (phase_ == Phase::Data && pageMask_) {
			for (unsigned i = 0; i < kPage; i++)
				if (pageMask_ & (1u << i))
					mem_[pageBase_ + i] = page_[i];
			pagesWritten_++;
		}
		pageMask_ = 0;
		phase_ = Phase::Idle;
	}
	std::string describe() const override
	{
		std::string out = fmt::format("24C02 EEPROM, address counter 0x{:02x}, {} page writes\n", counter_,
					      pagesWritten_);
		out += "     0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f\n";
		for (size_t row = 0; row < kSize; row += 16) {
			out += fmt::format("{:02x}:", row);
			for (size_t i = 0; i < 16; i++)
				out += fmt::format(" {:02x}", mem_[row + i]);
			out += '\n';
		}
		return out;
	}

	void fill(uint8_t v) { mem_.fill(v); }
	void poke(uint8_t at, uint8_t v) { mem_[at] = v; }
	uint8_t peek(uint8_t at) const { return mem_[at]; }
	uint8_t counter() const { return counter_; }

private:
	enum class Phase { Idle, WordAddress, Data, Reading };
	std::array<uint8_t, kSize> mem_{};
	std::array<uint8_t, kPage> page_{};
	unsigned pageMask_ = 0;
	unsigned pageBase_ = 0;
	uint8_t counter_ = 0;
	Phase phase_ = Phase::Idle;
	uint64_t pagesWritten_ = 0;
};

} // namespace devemu
