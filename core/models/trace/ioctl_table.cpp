// SPDX-License-Identifier: MIT
// The ioctl table: termios, modem lines and queue sizes, the ioctls whose layout their number does not encode.
#include "ioctl_table.h"

#include "devemu/number_text.h"

#include <fmt/core.h>

#include <asm-generic/ioctl.h>
#include <asm/ioctls.h>
#include <asm/termbits.h>

namespace devemu::trace {

namespace {

/* struct termios of the kernel ABI (asm/termbits.h), the same on 32- and 64-bit x86. */
constexpr uint32_t kTermiosSize = sizeof(struct termios);
static_assert(kTermiosSize == 36);
constexpr uint32_t kIntSize = sizeof(int);

const IoctlInfo kTable[] = {
	{ TCGETS, "TCGETS", { IoctlArg::Out, kTermiosSize } },
	{ TCSETS, "TCSETS", { IoctlArg::In, kTermiosSize } },
	{ TCSETSW, "TCSETSW", { IoctlArg::In, kTermiosSize } },
	{ TCSETSF, "TCSETSF", { IoctlArg::In, kTermiosSize } },
	{ TIOCMGET, "TIOCMGET", { IoctlArg::Out, kIntSize } },
	{ TIOCMSET, "TIOCMSET", { IoctlArg::In, kIntSize } },
	{ TIOCMBIS, "TIOCMBIS", { IoctlArg::In, kIntSize } },
	{ TIOCMBIC, "TIOCMBIC", { IoctlArg::In, kIntSize } },
	{ FIONREAD, "FIONREAD", { IoctlArg::Out, kIntSize }, "TIOCINQ" },
	{ TIOCOUTQ, "TIOCOUTQ", { IoctlArg::Out, kIntSize } },
	{ TCFLSH, "TCFLSH", { IoctlArg::Value, 0 } },
	{ TCSBRK, "TCSBRK", { IoctlArg::Value, 0 } },
	{ TCXONC, "TCXONC", { IoctlArg::Value, 0 } },
	{ TIOCEXCL, "TIOCEXCL", { IoctlArg::None, 0 } },
	{ TIOCNXCL, "TIOCNXCL", { IoctlArg::None, 0 } },
};
static_assert(TIOCINQ == FIONREAD);

} // namespace

const IoctlInfo *findIoctl(uint32_t request)
{
	for (const auto &info : kTable)
		if (info.request == request)
			return &info;
	return nullptr;
}

const IoctlInfo *findIoctl(std::string_view name)
{
	for (const auto &info : kTable)
		if (info.name == name || (!info.alias.empty() && info.alias == name))
			return &info;
	return nullptr;
}

std::optional<IoctlLayout> ioctlLayout(uint32_t request)
{
	if (const IoctlInfo *info = findIoctl(request))
		return info->layout;
	uint32_t dir = _IOC_DIR(request), size = _IOC_SIZE(request);
	if (dir == _IOC_NONE || size == 0)
		return std::nullopt;
	IoctlArg arg = dir == (_IOC_READ | _IOC_WRITE) ? IoctlArg::InOut
		       : dir == _IOC_READ	       ? IoctlArg::Out
						       : IoctlArg::In;
	return IoctlLayout{ arg, size };
}

std::string ioctlName(uint32_t request)
{
	if (const IoctlInfo *info = findIoctl(request))
		return std::string(info->name);
	return fmt::format("{:#x}", request);
}

std::optional<uint32_t> parseIoctlRequest(std::string_view text)
{
	if (const IoctlInfo *info = findIoctl(text))
		return info->request;
	auto n = parseUnsigned(text, UINT32_MAX);
	if (!n)
		return std::nullopt;
	return static_cast<uint32_t>(*n);
}

} // namespace devemu::trace
