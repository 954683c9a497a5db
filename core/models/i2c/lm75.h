// SPDX-License-Identifier: MIT
// i2c: an LM75 temperature sensor (temp, conf, thyst, tos registers; OS output) as its I2C interface sees the bus.
#pragma once

#include "i2c_bus.h"

#include <fmt/core.h>

#include <cstdint>
#include <memory>
#include <string>

namespace devemu {

/*
 * An LM75: a pointer register selects temp (0, read-only), conf (1, 8-bit),
 * thyst (2) or tos (3); the 16-bit ones go MSB first and hold a 9-bit two's
 * complement temperature in D15..D7 (0.5 degC steps). The pointer does not
 * auto-increment: longer reads repeat the register.
 */
class Lm75 final : public I2cSlave
{
public:
	enum Reg { Temp = 0, Conf = 1, Thyst = 2, Tos = 3 };
	static constexpr uint8_t kShutdown = 0x01, kInterruptMode = 0x02, kOsActiveHigh = 0x04;

	explicit Lm75(int halfDegrees) { setAmbient(halfDegrees); }

	std::unique_ptr<I2cSlave> clone() const override { return std::make_unique<Lm75>(*this); }
	const char *kind() const override { return "lm75"; }

	bool select(bool read) override
	{
		phase_ = read ? Phase::Reading : Phase::Pointer;
		index_ = 0;
		if (read && (conf_ & kInterruptMode))
			os_ = false; /* interrupt mode: any read resets OS */
		return true;
	}
	bool writeByte(uint8_t byte) override
	{
		if (phase_ == Phase::Pointer) {
			pointer_ = byte & 3;
			phase_ = Phase::Data;
			index_ = 0;
			return true;
		}
		switch (pointer_) {
		case Temp:
			break; /* read-only: acknowledged and ignored */
		case Conf: {
			bool wasShutdown = conf_ & kShutdown;
			conf_ = byte & 0x1f;
			if (wasShutdown && !(conf_ & kShutdown))
				convert();
			break;
		}
		default: {
			uint16_t &reg = pointer_ == Thyst ? thyst_ : tos_;
			if (index_ % 2 == 0)
				reg = static_cast<uint16_t>((reg & 0x00ff) | byte << 8);
			else
				reg = static_cast<uint16_t>((reg & 0xff00) | (byte & 0x80));
			break;
		}
		}
		index_++;
		return true;
	}
	uint8_t readByte() override
	{
		uint8_t v;
		if (pointer_ == Conf) {
			v = conf_;
		} else {
			uint16_t reg = pointer_ == Temp ? temp_ : pointer_ == Thyst ? thyst_ : tos_;
			v = static_cast<uint8_t>(index_ % 2 == 0 ? reg >> 8 : reg & 0xff);
		}
		index_++;
		return v;
	}
	std::string describe() const override
	{
		bool pin = os_ == bool(conf_ & kOsActiveHigh);
		return fmt::format(
			"LM75 sensor, ambient {} degC; temp 0x{:04x} ({} degC) conf 0x{:02x} thyst 0x{:04x} ({} degC) "
			"tos 0x{:04x} ({} degC) pointer {}; OS {} (pin {})\n",
			ambient_ / 2.0, temp_, celsius(temp_), conf_, thyst_, celsius(thyst_), tos_, celsius(tos_),
			pointer_, os_ ? "active" : "inactive", pin ? "high" : "low");
	}

	/* What the next conversion measures; in shutdown the temp register keeps its last value. */
	void setAmbient(int halfDegrees)
	{
		ambient_ = halfDegrees;
		if (!(conf_ & kShutdown))
			convert();
	}
	uint16_t temp() const { return temp_; }
	static double celsius(uint16_t reg) { return static_cast<int16_t>(reg) / 256.0; }

private:
	enum class Phase { Pointer, Data, Reading };

	void convert()
	{
		temp_ = static_cast<uint16_t>(ambient_ * 128);
		int16_t t = static_cast<int16_t>(temp_), hyst = static_cast<int16_t>(thyst_),
			os = static_cast<int16_t>(tos_);
		if (conf_ & kInterruptMode) {
			/* Interrupt mode: crossing above Tos, then back below Thyst, each latch OS until a read. */
			if (!armedLow_ && t > os) {
				os_ = true;
				armedLow_ = true;
			} else if (armedLow_ && t < hyst) {
				os_ = true;
				armedLow_ = false;
			}
		} else if (t > os) {
			os_ = true;
		} else if (t < hyst) {
			os_ = false;
		}
	}

	int ambient_ = 0;
	uint16_t temp_ = 0;
	uint8_t conf_ = 0;
	uint16_t thyst_ = 75 << 8;
	uint16_t tos_ = 80 << 8;
	uint8_t pointer_ = Temp;
	unsigned index_ = 0;
	Phase phase_ = Phase::Pointer;
	bool os_ = false;
	bool armedLow_ = false;
};

} // namespace devemu
