// SPDX-License-Identifier: MIT
// Trace operations in words: open flags by name, ioctls by the table's names with what they read and wrote.
#include "describe.h"

#include "trace/ioctl_table.h"

#include <fmt/core.h>

#include <fcntl.h>

namespace devemu::trace {

namespace {

std::string openFlags(uint32_t flags)
{
	std::string out = (flags & O_ACCMODE) == O_RDONLY   ? "O_RDONLY"
			  : (flags & O_ACCMODE) == O_WRONLY ? "O_WRONLY"
							    : "O_RDWR";
	const std::pair<uint32_t, const char *> names[] = { { O_NONBLOCK, "O_NONBLOCK" }, { O_APPEND, "O_APPEND" },
							    { O_SYNC, "O_SYNC" },	  { O_NOCTTY, "O_NOCTTY" },
							    { O_CLOEXEC, "O_CLOEXEC" },	  { O_EXCL, "O_EXCL" } };
	for (const auto &[bit, name] : names)
		if (flags & bit)
			out += fmt::format("|{}", name);
	return out;
}

std::string answer(int64_t result)
{
	return result < 0 ? fmt::format("fails with {}", formatResult(result).substr(1)) : fmt::format("-> {}", result);
}

} // namespace

std::string describeOp(const TraceOp &op)
{
	auto us = op.delay.count();
	std::string out =
		fmt::format("+{}.{:06d}  file {}  ", us / 1'000'000, static_cast<int>(us % 1'000'000), op.file);
	switch (op.kind) {
	case OpKind::Open:
		return out + fmt::format("open {} {}", openFlags(op.flags), answer(op.result));
	case OpKind::Read:
		if (op.result < 0)
			return out + "read " + answer(op.result);
		if (op.result == 0)
			return out + "read: end of file";
		return out + fmt::format("read {} bytes {}", op.result, formatBytes(op.data));
	case OpKind::Write:
		return out + fmt::format("write {} {}{}", formatBytes(op.data), answer(op.result),
					 op.fuzz ? fmt::format(" ({}% may differ)", op.fuzz) : "");
	case OpKind::Ioctl: {
		out += fmt::format("ioctl {}", ioctlName(op.request));
		auto layout = ioctlLayout(op.request);
		if (layout && layout->arg == IoctlArg::Value)
			out += fmt::format("({:#x})", op.arg);
		if (!op.in.empty())
			out += fmt::format(" reads {}", formatBytes(op.in));
		out += " " + answer(op.result);
		if (op.result >= 0 && !op.out.empty())
			out += fmt::format(", writes {}", formatBytes(op.out));
		return out;
	}
	case OpKind::Poll:
		return out + fmt::format("poll events {:#x} -> revents {:#x}", op.flags, op.revents);
	case OpKind::Release:
		return out + "release";
	}
	return out;
}

} // namespace devemu::trace
