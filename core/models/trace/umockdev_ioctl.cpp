// SPDX-License-Identifier: MIT
// umockdev's ioctl file format: "@DEV" headers and "NAME[(OFFSET)] RET HEX" lines, one recorded answer each.
#include "umockdev_ioctl.h"

#include "ioctl_table.h"
#include "lines.h"

#include "devemu/inject_text.h"
#include "devemu/number_text.h"

#include <fmt/core.h>

#include <asm-generic/ioctl.h>
#include <linux/input.h>

#include <cerrno>

namespace devemu::trace {

namespace {

std::string_view nextToken(std::string_view &rest)
{
	auto start = rest.find_first_not_of(" \t");
	if (start == std::string_view::npos) {
		rest = {};
		return {};
	}
	rest.remove_prefix(start);
	auto end = rest.find_first_of(" \t");
	std::string_view token = rest.substr(0, end);
	rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
	return token;
}

/* The request a NAME or NAME(OFFSET) of umockdev's names, with its data's length as the size of a family. */
bool requestOf(std::string_view word, size_t dataLength, uint32_t &request, std::string &error)
{
	std::string_view name = word;
	uint64_t offset = 0;
	if (auto open = word.find('('); open != std::string_view::npos) {
		if (word.back() != ')') {
			error = fmt::format("'{}' is not NAME or NAME(OFFSET)", word);
			return false;
		}
		name = word.substr(0, open);
		auto n = parseUnsigned(word.substr(open + 1, word.size() - open - 2), 255);
		if (!n) {
			error = fmt::format("'{}': the offset is not a number", word);
			return false;
		}
		offset = *n;
	}
	const IoctlInfo *info = findIoctl(name);
	if (!info) {
		error = fmt::format("'{}' is not an ioctl devemu knows (evdev EVIOCG*, hidraw HIDIOCG* and the "
				    "ioctl table's names are)",
				    name);
		return false;
	}
	if (offset > info->nrRange) {
		error = fmt::format("{}({}): the offset goes past the family ({} at most)", name, offset,
				    info->nrRange);
		return false;
	}
	uint32_t base = info->request;
	uint32_t size = info->sized ? static_cast<uint32_t>(dataLength) : _IOC_SIZE(base);
	if (!info->sized && _IOC_DIR(base) != _IOC_NONE && dataLength != size) {
		error = fmt::format("{} answers {} bytes, the line holds {}", word, size, dataLength);
		return false;
	}
	request = _IOC(_IOC_DIR(base), _IOC_TYPE(base), _IOC_NR(base) + offset, size);
	return true;
}

} // namespace

bool parseUmockdevIoctl(std::string_view text, const std::string &name, Trace &trace, std::string &error)
{
	trace.path = name;
	trace.ops.clear();
	return forEachLine(text, [&](unsigned number, std::string_view line) {
		auto fail = [&](std::string why) {
			error = fmt::format("{}:{}: {}", name, number, why);
			return false;
		};
		if (!line.empty() && line.back() == '\r')
			line.remove_suffix(1);
		if (line.empty() || line[0] == '#')
			return true;
		if (line[0] == '@') {
			std::string_view rest = line.substr(1);
			std::string_view key = nextToken(rest);
			if (key == "DEV")
				trace.device = std::string(nextToken(rest));
			return true; /* other metadata: umockdev skips it too */
		}
		if (line[0] == ' ' || line[0] == '\t')
			return fail("an indented (nested) line: umockdev writes those for USB URB trees, which are "
				    "not supported");
		std::string_view rest = line;
		std::string_view word = nextToken(rest);
		if (word.starts_with("USBDEVFS_"))
			return fail(fmt::format("{}: USB device ioctls (usbdevfs) are not supported",
						word.substr(0, word.find('('))));
		std::string_view ret = nextToken(rest);
		std::string_view hex = nextToken(rest);
		if (!nextToken(rest).empty())
			return fail("expected NAME RET HEXDATA");
		auto result = parseInteger(ret, INT32_MIN, INT32_MAX);
		if (!result)
			return fail(fmt::format("'{}' is not a return value", ret));
		TraceOp op;
		op.kind = OpKind::Ioctl;
		op.line = number;
		std::string why;
		if (!hex.empty() && !parseHexBytes(hex, op.out, why))
			return fail(fmt::format("the data: {}", why));
		if (!requestOf(word, op.out.size(), op.request, why))
			return fail(why);
		/* umockdev keeps no errno: a failure is replayed as EINVAL, what evdev answers for most */
		op.result = *result < 0 ? -EINVAL : *result;
		trace.ops.push_back(std::move(op));
		return true;
	});
}

bool readUmockdevIoctl(const std::string &path, Trace &trace, std::string &error)
{
	return readAndParse(path, trace, error, parseUmockdevIoctl);
}

} // namespace devemu::trace
