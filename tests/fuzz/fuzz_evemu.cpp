// SPDX-License-Identifier: MIT
// Fuzz target: the replay model's reader of evemu files (parseEvemu), on text a user or a recording handed it.
#include "trace/evemu.h"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	devemu::trace::Trace trace;
	std::string error;
	devemu::trace::parseEvemu(std::string_view(reinterpret_cast<const char *>(data), size), "fuzz", trace, error);
	return 0;
}
