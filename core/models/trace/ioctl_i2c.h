// SPDX-License-Identifier: MIT
// i2c-dev's pointer-holding ioctls (I2C_RDWR, I2C_SMBUS) as the ioctl table carries them: flat bytes, no addresses.
#pragma once

#include "ioctl_table.h"

namespace devemu::trace {

/*
 * I2C_RDWR: in = per message addr, flags, len (16-bit little-endian each)
 * then the bytes of a write message; out = the bytes of the read messages,
 * in order. I2C_M_RECV_LEN messages are refused (EINVAL).
 */
extern const PointerIoctl kI2cRdwr;
/*
 * I2C_SMBUS: in = read_write (1 byte), command (1), size (32-bit LE), then
 * the data block bytes the driver reads; out = the bytes it writes back.
 */
extern const PointerIoctl kI2cSmbus;

} // namespace devemu::trace
