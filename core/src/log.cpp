// SPDX-License-Identifier: MIT
// Logging backend: one line per message on stderr, with a syslog-style priority prefix for the journal.
#include "devemu/log.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace devemu {

namespace {
std::atomic<LogLevel> currentLevel{ LogLevel::Info };

std::string &programName()
{
	static std::string name = program_invocation_short_name;
	return name;
}
} // namespace

void setProgramName(std::string_view name)
{
	programName() = name;
}

bool parseLogLevel(std::string_view text, LogLevel &level)
{
	if (text == "debug")
		level = LogLevel::Debug;
	else if (text == "info")
		level = LogLevel::Info;
	else if (text == "warning" || text == "warn")
		level = LogLevel::Warning;
	else if (text == "error")
		level = LogLevel::Error;
	else
		return false;
	return true;
}

void setLogLevel(LogLevel level)
{
	currentLevel = level;
}

LogLevel logLevel()
{
	return currentLevel;
}

bool logEnabled(LogLevel level)
{
	return level >= currentLevel.load(std::memory_order_relaxed);
}

void logWrite(LogLevel level, std::string_view category, std::string_view message)
{
	/* "<N>" prefixes are read by journald as the priority when stderr is the journal. */
	static const bool journal = getenv("JOURNAL_STREAM") != nullptr;
	static constexpr const char *names[] = { "debug", "info", "warning", "error" };
	static constexpr int priorities[] = { 7, 6, 4, 3 };
	int idx = static_cast<int>(level);
	std::string line;
	if (journal)
		line = fmt::format("<{}>{}: {}\n", priorities[idx], category, message);
	else
		line = fmt::format("{}[{}] {}: {}: {}\n", programName(), getpid(), names[idx], category, message);
	fwrite(line.data(), 1, line.size(), stderr);
}

} // namespace devemu
