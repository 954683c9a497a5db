// SPDX-License-Identifier: MIT
// Fuzz target: a device spec ("NAME=MODEL[,key=value...]") from --device or devemuctl add, and its model options.
#include "config.h"

#include "devemu/log.h"

#include <cstdint>
#include <string>

using namespace devemu;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet = (setLogLevel(LogLevel::Error), true);
	(void)quiet;
	DeviceSpec spec;
	std::string error;
	if (parseDeviceSpec(std::string_view(reinterpret_cast<const char *>(data), size), spec, error))
		(void)checkModelOptions(spec); /* builds the model from its options; acquires nothing */
	return 0;
}
