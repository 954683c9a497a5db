// SPDX-License-Identifier: MIT
// The ioctl table shared by recording, replay and trace printing: names and argument layouts.
#pragma once

#include "devemu/model.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace devemu::trace {

/* What an ioctl's argument is, seen from the caller. */
enum class IoctlArg {
	None, /* no argument (TIOCEXCL) */
	Value, /* an integer passed by value (TCFLSH, TCSBRK) */
	In, /* size bytes at arg, read by the driver (TCSETS) */
	Out, /* size bytes at arg, written by the driver (TCGETS) */
	InOut, /* size bytes at arg, both ways (_IOWR) */
	Pointers, /* a structure holding pointers (I2C_RDWR): carried by its PointerIoctl */
};

/*
 * A pointer-holding ioctl, carried as flat bytes with no caller addresses in
 * them, so a trace does not depend on where the recording program kept its
 * buffers (nor on its word size: 32-bit callers are read in their layout).
 */
struct PointerIoctl {
	/*
	 * Reads the caller memory the ioctl reads into in (flattened) and lists in
	 * dest the caller ranges its output goes to, in order. 0, 1 while this
	 * round lacks memory (answer call.done() for the retry), or -errno for an
	 * argument the kernel would refuse.
	 */
	int (*gather)(IoctlCall &call, std::vector<uint8_t> &in, std::vector<UserRange> &dest);
	/* Runs the ioctl on a real node from flattened input; out gets the flattened output. ioctl's result or -errno. */
	int (*perform)(int fd, uint32_t request, const std::vector<uint8_t> &in, std::vector<uint8_t> &out);
};

/* Writes flattened output into the caller ranges gather listed, in order (in the same round). */
void scatterOutput(IoctlCall &call, const std::vector<UserRange> &dest, const std::vector<uint8_t> &out);

struct IoctlLayout {
	IoctlArg arg = IoctlArg::None;
	uint32_t size = 0;
	const PointerIoctl *pointers = nullptr; /* IoctlArg::Pointers */
};

/*
 * One ioctl the table describes: those whose layout the request number does
 * not say, and size-encoded ones it names for trace printing. A family (evdev's
 * EVIOCGBIT(ev,len)) covers the numbers whose _IOC_NR is nr .. nr+nrRange with
 * any size when sized is set; its name takes the offset and the length.
 */
struct IoctlInfo {
	uint32_t request;
	std::string_view name;
	IoctlLayout layout;
	std::string_view alias = {}; /* another name of the same number (TIOCINQ for FIONREAD) */
	uint32_t nrRange = 0; /* a family: this many more _IOC_NR values (EVIOCGABS(code)) */
	bool sized = false; /* a family: any _IOC_SIZE (EVIOCGNAME(len)) */
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
/* "TCGETS", "EVIOCGBIT(1,96)", "EVIOCGABS(0)", or "0x80045430" for a request the table does not name. */
std::string ioctlName(uint32_t request);
/* A request as a trace names it: a table name or alias (with a family's arguments), or a number (0x hex or decimal). */
std::optional<uint32_t> parseIoctlRequest(std::string_view text);

} // namespace devemu::trace
