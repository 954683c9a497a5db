// SPDX-License-Identifier: MIT
// python: the I2C chip written in Python, as libdevemu-python.so makes it and binds its handle into _devemu.
#pragma once

#include "interpreter.h"

#include "i2c/i2c_bus.h"

#include <cstdint>
#include <memory>
#include <string>

namespace devemu::python {

/* cls(chip) as the chip at addr of device's bus, with the GIL held; null with error (the traceback) when it raises. */
std::unique_ptr<I2cSlave> makeI2cChip(const py::object &cls, const Strand &strand, const std::string &script,
				      const std::string &clsName, const std::string &device, uint16_t addr,
				      std::string &error);

/* _devemu.Chip: what a Python chip gets as `chip`. */
void bindI2cChip(py::module_ &m);

} // namespace devemu::python
