// SPDX-License-Identifier: MIT
// Parsing of the numbers in model options and inject arguments (decimal, hex, sizes with suffixes, reals).
#include "devemu/number_text.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

namespace devemu {

namespace {
/* strtoull/strtoll need a NUL-terminated string and must consume all of it. */
bool startsClean(std::string_view text)
{
	return !text.empty() && text.front() != ' ' && text.front() != '\t' && text.front() != '\n';
}
} // namespace

std::optional<uint64_t> parseUnsigned(std::string_view text, uint64_t max, int base)
{
	if (!startsClean(text) || text.front() == '-' || text.front() == '+')
		return std::nullopt;
	std::string s(text);
	char *end = nullptr;
	errno = 0;
	unsigned long long v = std::strtoull(s.c_str(), &end, base);
	if (errno || *end || v > max)
		return std::nullopt;
	return v;
}

std::optional<int64_t> parseInteger(std::string_view text, int64_t min, int64_t max)
{
	if (!startsClean(text))
		return std::nullopt;
	std::string s(text);
	char *end = nullptr;
	errno = 0;
	long long v = std::strtoll(s.c_str(), &end, 0);
	if (errno || *end || v < min || v > max)
		return std::nullopt;
	return v;
}

std::optional<double> parseReal(std::string_view text, double min, double max)
{
	if (!startsClean(text))
		return std::nullopt;
	std::string s(text);
	char *end = nullptr;
	double v = std::strtod(s.c_str(), &end);
	if (*end || !(v >= min && v <= max))
		return std::nullopt;
	return v;
}

std::optional<uint64_t> parseSize(std::string_view text)
{
	int base = 10;
	if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
		base = 16;
		text.remove_prefix(2);
	}
	uint64_t multiplier = 1;
	if (!text.empty() && base == 10) {
		switch (text.back()) {
		case 'k':
		case 'K':
			multiplier = 1ULL << 10;
			break;
		case 'm':
		case 'M':
			multiplier = 1ULL << 20;
			break;
		case 'g':
		case 'G':
			multiplier = 1ULL << 30;
			break;
		default:
			break;
		}
		if (multiplier != 1)
			text.remove_suffix(1);
	}
	if (text.empty())
		return std::nullopt;
	uint64_t v = 0;
	auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
	if (ec != std::errc() || ptr != text.data() + text.size())
		return std::nullopt;
	if (v > UINT64_MAX / multiplier)
		return std::nullopt;
	return v * multiplier;
}

} // namespace devemu
