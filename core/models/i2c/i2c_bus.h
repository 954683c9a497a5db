// SPDX-License-Identifier: MIT
// i2c: the bus (START, address, data, STOP to every chip) and SMBus emulated with I2C messages, as the i2c core does.
#pragma once

#include <linux/i2c.h>

#include <fmt/core.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace devemu {

inline constexpr size_t kSmbusDataSize = sizeof(union i2c_smbus_data); /* 34: block[0] is the length */
static_assert(kSmbusDataSize == I2C_SMBUS_BLOCK_MAX + 2);

/*
 * A slave chip as its serial interface sees the bus: START conditions, its
 * own address with the direction bit, data bytes, STOP. Every chip sees every
 * START and STOP, addressed or not.
 */
class I2cSlave
{
public:
	virtual ~I2cSlave() = default;
	virtual std::unique_ptr<I2cSlave> clone() const = 0;
	virtual const char *kind() const = 0;
	/* START or repeated START (the interface of every chip resets). */
	virtual void busStart() {}
	/* The address phase named this chip; true: it ACKs. */
	virtual bool select(bool read) = 0;
	/* A byte from the master; true: ACK. */
	virtual bool writeByte(uint8_t byte) = 0;
	/* The next byte the chip drives for the master. */
	virtual uint8_t readByte() = 0;
	virtual void busStop() {}
	/* Multi-line description for devemuctl. */
	virtual std::string describe() const = 0;
	/*
	 * Whether the chip's own code failed since the last look (a chip written in
	 * Python raised): the transfer stops there and fails with EIO. Cleared by asking.
	 */
	virtual bool takeFault() { return false; }
	/* devemuctl inject NAME chip ADDR ARGS...: the chip's own verbs (a Python chip's inject()). */
	virtual int inject(const std::vector<std::string> &, std::string &reply)
	{
		reply = fmt::format("a {} chip takes no verbs of its own", kind());
		return -EINVAL;
	}
};

/* One message of a combined transfer; a read's buf is sized to its length and filled by the transfer. */
struct I2cMessage {
	uint16_t addr = 0;
	uint16_t flags = 0;
	std::vector<uint8_t> buf;
};

/* The adapter and the chips on its bus. Copyable, so a transfer can run on a copy and be committed. */
class I2cBus
{
public:
	I2cBus() = default;
	I2cBus(const I2cBus &other) { *this = other; }
	I2cBus &operator=(const I2cBus &other)
	{
		if (this != &other) {
			slaves_.clear();
			for (const auto &[addr, slave] : other.slaves_)
				slaves_[addr] = slave->clone();
		}
		return *this;
	}
	I2cBus(I2cBus &&) = default;
	I2cBus &operator=(I2cBus &&) = default;

	std::map<uint16_t, std::unique_ptr<I2cSlave>> &slaves() { return slaves_; }
	const std::map<uint16_t, std::unique_ptr<I2cSlave>> &slaves() const { return slaves_; }

	/*
	 * i2c_transfer(): messages joined by repeated STARTs and ended by one
	 * STOP. Returns the number of messages, or -ENXIO when an address is not
	 * acknowledged, -EIO when a data byte is not or a chip's code failed,
	 * -EPROTO for an invalid I2C_M_RECV_LEN count. Messages before a failure
	 * keep their effects.
	 */
	int transfer(std::span<I2cMessage> msgs);

	/* i2c_smbus_xfer() emulated with I2C messages, as the i2c core does for a plain I2C adapter. */
	int smbus(uint16_t addr, bool ten, bool usePec, uint8_t readWrite, uint8_t command, uint32_t size,
		  std::array<uint8_t, kSmbusDataSize> &data);

private:
	std::map<uint16_t, std::unique_ptr<I2cSlave>> slaves_;
};

} // namespace devemu
