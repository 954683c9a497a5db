// SPDX-License-Identifier: MIT
// python: the seam between libdevemu and the embedded interpreter (libdevemu-python.so, loaded with the first Python device).
#pragma once

#include "devemu/asio.h"
#include "devemu/model.h"

#include "i2c/i2c_bus.h"
#include "serial/chardev.h"

#include <memory>
#include <string>

/* Bumped when Backend changes: libdevemu and libdevemu-python.so come from one build. */
#define DEVEMU_PYTHON_ABI 2

namespace devemu::python {

/*
 * What libdevemu-python.so provides. libdevemu itself never links libpython:
 * a daemon without Python devices neither loads nor initialises it.
 */
class Backend
{
public:
	virtual ~Backend() = default;
	/* Imports script, instantiates cls(device); nullptr with error (the traceback) on failure. */
	virtual std::unique_ptr<Model> makeModel(DeviceContext &ctx, const std::string &script, const std::string &cls,
						 std::string &error) = 0;
	/* Imports script, instantiates cls(line) at the far end of a UART. */
	virtual std::shared_ptr<serial::FarEnd> makeFarEnd(const Strand &strand, const std::string &script,
							   const std::string &cls, const std::string &device,
							   std::string &error) = 0;
	/* Imports script, instantiates cls(chip) as the chip at addr on an i2c device's bus. */
	virtual std::unique_ptr<I2cSlave> makeI2cChip(const Strand &strand, const std::string &script,
						      const std::string &cls, const std::string &device, uint16_t addr,
						      std::string &error) = 0;
};

/*
 * Loads libdevemu-python.so (from $DEVEMU_PYTHON_LIB, else beside libdevemu)
 * once; nullptr with error when it cannot be loaded.
 */
Backend *loadBackend(std::string &error);

/* Option checks that acquire nothing: the script is a readable file, cls a Python identifier. */
bool checkScript(const std::string &path, std::string &error);
bool checkClassName(const std::string &name, std::string &error);

/*
 * "FILE[:CLASS]" (what follows "python:" in far= and i2c slaves=): a last
 * part that is a class name is the class, else defaultClass; the file must be
 * readable. False with error.
 */
bool parseScriptAndClass(const std::string &text, const char *defaultClass, std::string &script, std::string &cls,
			 std::string &error);

} // namespace devemu::python
