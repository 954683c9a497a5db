// SPDX-License-Identifier: MIT
// i2c-dev's ioctl arguments read from the caller's memory in its own layout (64- or 32-bit) and widened.
#include "i2c_user.h"

#include "i2c_bus.h"

#include <cstring>

namespace devemu {

/* The I2C_RDWR header in the caller's layout, widened. */
std::optional<UserRdwr> rdwrArg(IoctlCall &call)
{
	if (!call.compat())
		return call.argIn<UserRdwr>();
	auto a = call.argIn<UserRdwr32>();
	if (!a)
		return std::nullopt;
	return UserRdwr{ a->msgs, a->nmsgs, 0 };
}

/* The I2C_SMBUS argument in the caller's layout, widened. */
std::optional<UserSmbus> smbusArg(IoctlCall &call)
{
	if (!call.compat())
		return call.argIn<UserSmbus>();
	auto a = call.argIn<UserSmbus32>();
	if (!a)
		return std::nullopt;
	return UserSmbus{ a->readWrite, a->command, 0, a->size, a->data };
}

/* The I2C_RDWR message array at addr in the caller's layout, widened; nullopt while this round lacks it. */
std::optional<std::vector<UserI2cMsg>> rdwrMessages(IoctlCall &call, uint64_t addr, uint32_t count)
{
	std::vector<UserI2cMsg> msgs(count);
	if (!call.compat()) {
		auto raw = call.readUser(addr, count * sizeof(UserI2cMsg));
		if (!raw)
			return std::nullopt;
		std::memcpy(msgs.data(), raw->data(), raw->size());
		return msgs;
	}
	auto raw = call.readUser(addr, count * sizeof(UserI2cMsg32));
	if (!raw)
		return std::nullopt;
	for (uint32_t i = 0; i < count; i++) {
		UserI2cMsg32 m;
		std::memcpy(&m, raw->data() + i * sizeof(m), sizeof(m));
		msgs[i] = { m.addr, m.flags, m.len, 0, m.buf };
	}
	return msgs;
}

std::optional<SmbusDataUse> smbusDataUse(uint32_t size, bool read)
{
	switch (size) {
	case I2C_SMBUS_QUICK:
	case I2C_SMBUS_BYTE:
	case I2C_SMBUS_BYTE_DATA:
	case I2C_SMBUS_WORD_DATA:
	case I2C_SMBUS_PROC_CALL:
	case I2C_SMBUS_BLOCK_DATA:
	case I2C_SMBUS_I2C_BLOCK_BROKEN:
	case I2C_SMBUS_I2C_BLOCK_DATA:
	case I2C_SMBUS_BLOCK_PROC_CALL:
		break;
	default:
		return std::nullopt;
	}
	SmbusDataUse use;
	bool usesData = !(size == I2C_SMBUS_QUICK || (size == I2C_SMBUS_BYTE && !read));
	if (!usesData)
		return use;
	use.answers = size == I2C_SMBUS_PROC_CALL || size == I2C_SMBUS_BLOCK_PROC_CALL || read;
	use.size = (size == I2C_SMBUS_BYTE || size == I2C_SMBUS_BYTE_DATA)	  ? 1
		   : (size == I2C_SMBUS_WORD_DATA || size == I2C_SMBUS_PROC_CALL) ? 2
										  : kSmbusDataSize;
	use.readsInput = size == I2C_SMBUS_PROC_CALL || size == I2C_SMBUS_BLOCK_PROC_CALL ||
			 size == I2C_SMBUS_I2C_BLOCK_DATA || !read;
	return use;
}

} // namespace devemu
