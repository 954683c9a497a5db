// SPDX-License-Identifier: MIT
// Category/severity logging to stderr, with fmt compile-time checked formats.
#pragma once

#include <fmt/core.h>

#include <string_view>

namespace devemu {

enum class LogLevel { Debug = 0, Info, Warning, Error };

// Parses "debug", "info", "warning" (or "warn"), "error". Returns false on unknown names.
bool parseLogLevel(std::string_view text, LogLevel &level);
void setLogLevel(LogLevel level);
// The name stderr lines start with, as in "NAME[pid] info: ..." (default: the executable's file name).
void setProgramName(std::string_view name);
LogLevel logLevel();
bool logEnabled(LogLevel level);
void logWrite(LogLevel level, std::string_view category, std::string_view message);

template<typename... Args>
void logf(LogLevel level, std::string_view category, fmt::format_string<Args...> format, Args &&...args)
{
	if (!logEnabled(level))
		return;
	logWrite(level, category, fmt::format(format, std::forward<Args>(args)...));
}

#define DEVEMU_LOG(level, category, ...) ::devemu::logf(::devemu::LogLevel::level, category, __VA_ARGS__)

} // namespace devemu
