// SPDX-License-Identifier: MIT
// evdev: event type and code names to numbers and back, and the US layout that `inject type TEXT` types with.
#include "evdev_codes.h"

#include "devemu/number_text.h"

#include <fmt/core.h>

#include <linux/input.h>

#include <string_view>

namespace devemu {

std::string codeName(unsigned type, unsigned code)
{
	for (const auto &n : evdev::kCodeNames)
		if (n.type == type && n.code == code && !(type == 0 && std::string_view(n.name).substr(0, 3) == "EV_"))
			return n.name;
	return fmt::format("{}", code);
}

std::string typeName(unsigned type)
{
	for (const auto &n : evdev::kCodeNames)
		if (n.type == 0 && n.code == type && std::string_view(n.name).substr(0, 3) == "EV_")
			return n.name;
	return fmt::format("{}", type);
}

std::optional<uint16_t> parseType(const std::string &s)
{
	for (const auto &n : evdev::kCodeNames)
		if (n.type == 0 && s == n.name && s.substr(0, 3) == "EV_")
			return n.code;
	if (auto v = parseInteger(s, 0, EV_MAX))
		return static_cast<uint16_t>(*v);
	return std::nullopt;
}

std::optional<uint16_t> parseCode(uint16_t type, const std::string &s)
{
	for (const auto &n : evdev::kCodeNames)
		if (n.type == type && s == n.name && !(type == 0 && s.substr(0, 3) == "EV_"))
			return n.code;
	if (auto v = parseInteger(s, 0, KEY_MAX))
		return static_cast<uint16_t>(*v);
	return std::nullopt;
}

std::optional<std::pair<uint16_t, bool>> keyForChar(char c)
{
	static constexpr std::string_view kPlain = "-=[];'`\\,./";
	static constexpr std::string_view kShifted = "_+{}:\"~|<>?";
	static constexpr uint16_t kPunct[] = { KEY_MINUS,     KEY_EQUAL,      KEY_LEFTBRACE, KEY_RIGHTBRACE,
					       KEY_SEMICOLON, KEY_APOSTROPHE, KEY_GRAVE,     KEY_BACKSLASH,
					       KEY_COMMA,     KEY_DOT,	      KEY_SLASH };
	static constexpr std::string_view kDigitsShifted = ")!@#$%^&*(";
	static constexpr uint16_t kDigits[] = { KEY_0, KEY_1, KEY_2, KEY_3, KEY_4, KEY_5, KEY_6, KEY_7, KEY_8, KEY_9 };
	if (c >= 'a' && c <= 'z')
		return std::pair{ *parseCode(EV_KEY, fmt::format("KEY_{}", char(c - 'a' + 'A'))), false };
	if (c >= 'A' && c <= 'Z')
		return std::pair{ *parseCode(EV_KEY, fmt::format("KEY_{}", c)), true };
	if (c >= '0' && c <= '9')
		return std::pair{ kDigits[c - '0'], false };
	if (auto i = kDigitsShifted.find(c); i != std::string_view::npos)
		return std::pair{ kDigits[i], true };
	if (auto i = kPlain.find(c); i != std::string_view::npos)
		return std::pair{ kPunct[i], false };
	if (auto i = kShifted.find(c); i != std::string_view::npos)
		return std::pair{ kPunct[i], true };
	if (c == ' ')
		return std::pair{ uint16_t(KEY_SPACE), false };
	if (c == '\t')
		return std::pair{ uint16_t(KEY_TAB), false };
	if (c == '\n')
		return std::pair{ uint16_t(KEY_ENTER), false };
	return std::nullopt;
}

} // namespace devemu
