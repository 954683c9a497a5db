// SPDX-License-Identifier: MIT
// i2c-dev's ioctl arguments as 64- and 32-bit callers lay them out, read and widened to one form.
#pragma once

#include "devemu/model.h"

#include <linux/i2c-dev.h>
#include <linux/i2c.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace devemu {

/* The ioctl structures as a 64-bit caller lays them out (pointers are caller addresses). */
struct UserI2cMsg {
	uint16_t addr;
	uint16_t flags;
	uint16_t len;
	uint16_t pad;
	uint64_t buf;
};
struct UserRdwr {
	uint64_t msgs;
	uint32_t nmsgs;
	uint32_t pad;
};
struct UserSmbus {
	uint8_t readWrite;
	uint8_t command;
	uint16_t pad;
	uint32_t size;
	uint64_t data;
};
#if __SIZEOF_POINTER__ == 8
static_assert(sizeof(UserI2cMsg) == sizeof(struct i2c_msg) &&
	      offsetof(struct i2c_msg, buf) == offsetof(UserI2cMsg, buf));
static_assert(sizeof(UserRdwr) == sizeof(struct i2c_rdwr_ioctl_data));
static_assert(sizeof(UserSmbus) == sizeof(struct i2c_smbus_ioctl_data) &&
	      offsetof(struct i2c_smbus_ioctl_data, size) == offsetof(UserSmbus, size) &&
	      offsetof(struct i2c_smbus_ioctl_data, data) == offsetof(UserSmbus, data));
#endif

/*
 * The same structures as a 32-bit (compat) caller lays them out: 32-bit
 * pointers, 4-byte alignment (i2c-dev's compat_i2c_ioctl()). They are read
 * and widened to the 64-bit form, so the rest of the model sees one layout.
 */
struct UserI2cMsg32 {
	uint16_t addr;
	uint16_t flags;
	uint16_t len;
	uint16_t pad;
	uint32_t buf;
};
struct UserRdwr32 {
	uint32_t msgs;
	uint32_t nmsgs;
};
struct UserSmbus32 {
	uint8_t readWrite;
	uint8_t command;
	uint16_t pad;
	uint32_t size;
	uint32_t data;
};
static_assert(sizeof(UserI2cMsg32) == 12 && sizeof(UserRdwr32) == 8 && sizeof(UserSmbus32) == 12);

/* The I2C_RDWR header in the caller's layout, widened; nullopt while this round lacks it. */
std::optional<UserRdwr> rdwrArg(IoctlCall &call);
/* The I2C_SMBUS argument in the caller's layout, widened; nullopt while this round lacks it. */
std::optional<UserSmbus> smbusArg(IoctlCall &call);
/* The I2C_RDWR message array at addr in the caller's layout, widened; nullopt while this round lacks it. */
std::optional<std::vector<UserI2cMsg>> rdwrMessages(IoctlCall &call, uint64_t addr, uint32_t count);

/* How an I2C_SMBUS transaction uses its data block, from its size and direction (i2c-dev's rules). */
struct SmbusDataUse {
	size_t size = 0; /* bytes of the data block the transaction touches (0: none) */
	bool readsInput = false; /* the driver reads them from the caller first */
	bool answers = false; /* the driver writes them back */
};
/* nullopt for a size i2c-dev refuses (EINVAL). */
std::optional<SmbusDataUse> smbusDataUse(uint32_t size, bool read);

} // namespace devemu
