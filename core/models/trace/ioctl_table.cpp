// SPDX-License-Identifier: MIT
// The ioctl table: termios, modem lines, queue sizes, i2c-dev, evdev, rtc and watchdog, by name and layout.
#include "ioctl_table.h"

#include "ioctl_i2c.h"

#include "devemu/number_text.h"

#include <fmt/core.h>

#include <asm-generic/ioctl.h>
#include <asm/ioctls.h>
#include <asm/termbits.h>
#include <linux/hidraw.h>
#include <linux/i2c-dev.h>
#include <linux/input.h>
#include <linux/rtc.h>
#include <linux/watchdog.h>

namespace devemu::trace {

namespace {

/* struct termios of the kernel ABI (asm/termbits.h), the same on 32- and 64-bit x86. */
constexpr uint32_t kTermiosSize = sizeof(struct termios);
static_assert(kTermiosSize == 36);
constexpr uint32_t kIntSize = sizeof(int);
constexpr uint32_t kWinsizeSize = sizeof(struct winsize); /* stty -a fails without TIOCGWINSZ */
static_assert(kWinsizeSize == 8);

/* The layout a size-encoded number says (_IOR: Out, _IOW: In, _IOWR: InOut; _IO: none). */
constexpr IoctlLayout encoded(uint32_t request)
{
	uint32_t dir = _IOC_DIR(request), size = _IOC_SIZE(request);
	if (dir == _IOC_NONE || size == 0)
		return { IoctlArg::None, 0 };
	IoctlArg arg = dir == (_IOC_READ | _IOC_WRITE) ? IoctlArg::InOut
		       : dir == _IOC_READ	       ? IoctlArg::Out
						       : IoctlArg::In;
	return { arg, size };
}

/* An ioctl the table names for printing; its layout is the one its number encodes. */
#define NAMED(request)                              \
	{                                           \
		request, #request, encoded(request) \
	}
/* A family of numbers: offsets from base's _IOC_NR up to range, any size when sized. */
#define FAMILY(base, name, range, sized)                    \
	{                                                   \
		base, name, encoded(base), {}, range, sized \
	}

const IoctlInfo kTable[] = {
	/* termios, modem lines, queues (not size-encoded) */
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
	{ TIOCGWINSZ, "TIOCGWINSZ", { IoctlArg::Out, kWinsizeSize } },
	{ TIOCSWINSZ, "TIOCSWINSZ", { IoctlArg::In, kWinsizeSize } },
	{ TIOCEXCL, "TIOCEXCL", { IoctlArg::None, 0 } },
	{ TIOCNXCL, "TIOCNXCL", { IoctlArg::None, 0 } },

	/* i2c-dev (<linux/i2c-dev.h>): plain numbers; I2C_RDWR and I2C_SMBUS hold pointers */
	{ I2C_RETRIES, "I2C_RETRIES", { IoctlArg::Value, 0 } },
	{ I2C_TIMEOUT, "I2C_TIMEOUT", { IoctlArg::Value, 0 } },
	{ I2C_SLAVE, "I2C_SLAVE", { IoctlArg::Value, 0 } },
	{ I2C_SLAVE_FORCE, "I2C_SLAVE_FORCE", { IoctlArg::Value, 0 } },
	{ I2C_TENBIT, "I2C_TENBIT", { IoctlArg::Value, 0 } },
	{ I2C_PEC, "I2C_PEC", { IoctlArg::Value, 0 } },
	{ I2C_FUNCS, "I2C_FUNCS", { IoctlArg::Out, sizeof(unsigned long) } },
	{ I2C_RDWR, "I2C_RDWR", { IoctlArg::Pointers, 0, &kI2cRdwr } },
	{ I2C_SMBUS, "I2C_SMBUS", { IoctlArg::Pointers, 0, &kI2cSmbus } },

	/* evdev (<linux/input.h>): size-encoded, named; value arguments where the number says _IOW */
	NAMED(EVIOCGVERSION),
	NAMED(EVIOCGID),
	NAMED(EVIOCGREP),
	NAMED(EVIOCSREP),
	NAMED(EVIOCGKEYCODE),
	NAMED(EVIOCGKEYCODE_V2),
	NAMED(EVIOCSKEYCODE),
	NAMED(EVIOCSKEYCODE_V2),
	NAMED(EVIOCSFF),
	NAMED(EVIOCGEFFECTS),
	NAMED(EVIOCGMASK), /* struct input_mask holds a pointer: its bytes are carried, not what it points to */
	NAMED(EVIOCSMASK),
	NAMED(EVIOCSCLOCKID),
	{ EVIOCRMFF, "EVIOCRMFF", { IoctlArg::Value, 0 } },
	{ EVIOCGRAB, "EVIOCGRAB", { IoctlArg::Value, 0 } },
	{ EVIOCREVOKE, "EVIOCREVOKE", { IoctlArg::Value, 0 } },
	FAMILY(EVIOCGNAME(0), "EVIOCGNAME", 0, true),
	FAMILY(EVIOCGPHYS(0), "EVIOCGPHYS", 0, true),
	FAMILY(EVIOCGUNIQ(0), "EVIOCGUNIQ", 0, true),
	FAMILY(EVIOCGPROP(0), "EVIOCGPROP", 0, true),
	FAMILY(EVIOCGMTSLOTS(0), "EVIOCGMTSLOTS", 0, true),
	FAMILY(EVIOCGKEY(0), "EVIOCGKEY", 0, true),
	FAMILY(EVIOCGLED(0), "EVIOCGLED", 0, true),
	FAMILY(EVIOCGSND(0), "EVIOCGSND", 0, true),
	FAMILY(EVIOCGSW(0), "EVIOCGSW", 0, true),
	FAMILY(EVIOCGBIT(0, 0), "EVIOCGBIT", EV_MAX, true),
	FAMILY(EVIOCGABS(0), "EVIOCGABS", ABS_MAX, false),
	FAMILY(EVIOCSABS(0), "EVIOCSABS", ABS_MAX, false),

	/* hidraw (<linux/hidraw.h>): the queries umockdev records */
	NAMED(HIDIOCGRDESCSIZE),
	NAMED(HIDIOCGRDESC),
	NAMED(HIDIOCGRAWINFO),
	FAMILY(HIDIOCGRAWNAME(0), "HIDIOCGRAWNAME", 0, true),
	FAMILY(HIDIOCGRAWPHYS(0), "HIDIOCGRAWPHYS", 0, true),
	FAMILY(HIDIOCGRAWUNIQ(0), "HIDIOCGRAWUNIQ", 0, true),

	/* rtc (<linux/rtc.h>): size-encoded, named; RTC_IRQP_SET and RTC_EPOCH_SET pass a value */
	NAMED(RTC_AIE_ON),
	NAMED(RTC_AIE_OFF),
	NAMED(RTC_UIE_ON),
	NAMED(RTC_UIE_OFF),
	NAMED(RTC_PIE_ON),
	NAMED(RTC_PIE_OFF),
	NAMED(RTC_WIE_ON),
	NAMED(RTC_WIE_OFF),
	NAMED(RTC_ALM_SET),
	NAMED(RTC_ALM_READ),
	NAMED(RTC_RD_TIME),
	NAMED(RTC_SET_TIME),
	NAMED(RTC_IRQP_READ),
	{ RTC_IRQP_SET, "RTC_IRQP_SET", { IoctlArg::Value, 0 } },
	NAMED(RTC_EPOCH_READ),
	{ RTC_EPOCH_SET, "RTC_EPOCH_SET", { IoctlArg::Value, 0 } },
	NAMED(RTC_WKALM_SET),
	NAMED(RTC_WKALM_RD),
	NAMED(RTC_PLL_GET),
	NAMED(RTC_PLL_SET),
	NAMED(RTC_VL_READ),
	NAMED(RTC_VL_CLR),

	/* watchdog (<linux/watchdog.h>): named; SETOPTIONS reads its int although its number says _IOR */
	NAMED(WDIOC_GETSUPPORT),
	NAMED(WDIOC_GETSTATUS),
	NAMED(WDIOC_GETBOOTSTATUS),
	NAMED(WDIOC_GETTEMP),
	{ WDIOC_SETOPTIONS, "WDIOC_SETOPTIONS", { IoctlArg::In, kIntSize } },
	{ WDIOC_KEEPALIVE, "WDIOC_KEEPALIVE", { IoctlArg::None, 0 } },
	NAMED(WDIOC_SETTIMEOUT),
	NAMED(WDIOC_GETTIMEOUT),
	NAMED(WDIOC_SETPRETIMEOUT),
	NAMED(WDIOC_GETPRETIMEOUT),
	NAMED(WDIOC_GETTIMELEFT),
};
static_assert(TIOCINQ == FIONREAD);

#undef NAMED
#undef FAMILY

bool isFamily(const IoctlInfo &info)
{
	return info.nrRange || info.sized;
}

bool inFamily(const IoctlInfo &info, uint32_t request)
{
	return _IOC_TYPE(request) == _IOC_TYPE(info.request) && _IOC_DIR(request) == _IOC_DIR(info.request) &&
	       _IOC_NR(request) >= _IOC_NR(info.request) && _IOC_NR(request) <= _IOC_NR(info.request) + info.nrRange &&
	       (info.sized || _IOC_SIZE(request) == _IOC_SIZE(info.request));
}

} // namespace

const IoctlInfo *findIoctl(uint32_t request)
{
	for (const auto &info : kTable)
		if (isFamily(info) ? inFamily(info, request) : info.request == request)
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
	const IoctlInfo *info = findIoctl(request);
	IoctlLayout layout = info && !isFamily(*info) ? info->layout : encoded(request);
	if (layout.arg == IoctlArg::None && !info)
		return std::nullopt; /* an _IO number or a plain one the table does not know */
	return layout;
}

void scatterOutput(IoctlCall &call, const std::vector<UserRange> &dest, const std::vector<uint8_t> &out)
{
	size_t at = 0;
	for (const UserRange &r : dest) {
		size_t n = std::min<size_t>(r.len, out.size() - at);
		if (n)
			call.writeUser(r.addr, std::as_bytes(std::span(out.data() + at, n)));
		at += n;
	}
}

std::string ioctlName(uint32_t request)
{
	const IoctlInfo *info = findIoctl(request);
	if (!info)
		return fmt::format("{:#x}", request);
	uint32_t offset = _IOC_NR(request) - _IOC_NR(info->request);
	if (info->nrRange && info->sized)
		return fmt::format("{}({},{})", info->name, offset, _IOC_SIZE(request));
	if (info->nrRange)
		return fmt::format("{}({})", info->name, offset);
	if (info->sized)
		return fmt::format("{}({})", info->name, _IOC_SIZE(request));
	return std::string(info->name);
}

std::optional<uint32_t> parseIoctlRequest(std::string_view text)
{
	auto open = text.find('(');
	if (open != std::string_view::npos && text.back() == ')') {
		const IoctlInfo *info = findIoctl(text.substr(0, open));
		if (!info || !isFamily(*info))
			return std::nullopt;
		std::string_view args = text.substr(open + 1, text.size() - open - 2);
		auto comma = args.find(',');
		uint64_t offset = 0, size = _IOC_SIZE(info->request);
		if (info->nrRange) {
			auto n = parseUnsigned(args.substr(0, comma), info->nrRange);
			if (!n)
				return std::nullopt;
			offset = *n;
			args = comma == std::string_view::npos ? std::string_view{} : args.substr(comma + 1);
		} else if (comma != std::string_view::npos) {
			return std::nullopt;
		}
		if (info->sized) {
			auto n = parseUnsigned(args, _IOC_SIZEMASK);
			if (!n)
				return std::nullopt;
			size = *n;
		} else if (!args.empty()) {
			return std::nullopt;
		}
		return static_cast<uint32_t>(
			_IOC(_IOC_DIR(info->request), _IOC_TYPE(info->request), _IOC_NR(info->request) + offset, size));
	}
	if (const IoctlInfo *info = findIoctl(text); info && !isFamily(*info))
		return info->request;
	auto n = parseUnsigned(text, UINT32_MAX);
	if (!n)
		return std::nullopt;
	return static_cast<uint32_t>(*n);
}

} // namespace devemu::trace
