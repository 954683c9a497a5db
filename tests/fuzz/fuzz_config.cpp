// SPDX-License-Identifier: MIT
// Fuzz target: devemud's TOML config file ([daemon], [[device]] and their options).
#include "config.h"

#include "devemu/log.h"

#include <cstdint>
#include <string>

using namespace devemu;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet = (setLogLevel(LogLevel::Error), true);
	(void)quiet;
	DaemonConfig config;
	std::string error;
	/* Plugins are listed, not loaded: the fuzzer must not dlopen what it makes up. */
	loadConfigText(std::string_view(reinterpret_cast<const char *>(data), size), "fuzz.toml", config, error,
		       PluginLoading::ListOnly);
	return 0;
}
