// SPDX-License-Identifier: MIT
// The ioctl table shared by recording, replay and trace printing: names and argument layouts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace devemu::trace {

/* What an ioctl's argument is, seen from the caller. */
enum class IoctlArg {
	None, /* no argument (TIOCEXCL) */
	Value, /* an integer passed by value (TCFLSH, TCSBRK) */
	In, /* size bytes at arg, read by the driver (TCSETS) */
	Out, /* size bytes at arg, written by the driver (TCGETS) */
	InOut, /* size bytes at arg, both ways (_IOWR) */
};

struct IoctlLayout {
	IoctlArg arg = IoctlArg::None;
	uint32_t size = 0;
};

/* One ioctl the table describes: those whose layout the request number does not say. */
struct IoctlInfo {
	uint32_t request;
	std::string_view name;
	IoctlLayout layout;
	std::string_view alias = {}; /* another name of the same number (TIOCINQ for FIONREAD) */
};

/* The table entry of request, or nullptr. */
const IoctlInfo *findIoctl(uint32_t request);
/* The table entry named name (or alias), or nullptr. */
const IoctlInfo *findIoctl(std::string_view name);
/*
 * How request's argument is laid out: from the table, else from the size and
 * direction encoded in the number (_IOR/_IOW/_IOWR); nullopt when neither says.
 */
std::optional<IoctlLayout> ioctlLayout(uint32_t request);
/* "TCGETS", or "0x80045430" for a request the table does not name. */
std::string ioctlName(uint32_t request);
/* A request as a trace names it: a table name or alias, or a number (0x hex or decimal). */
std::optional<uint32_t> parseIoctlRequest(std::string_view text);

} // namespace devemu::trace
