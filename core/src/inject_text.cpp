// SPDX-License-Identifier: MIT
// Parsing of the byte strings devemuctl inject verbs take (data TEXT, hex BYTES).
#include "devemu/inject_text.h"

#include <fmt/core.h>

namespace devemu {

namespace {
int hexDigit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
} // namespace

bool parseHexBytes(std::string_view text, std::vector<uint8_t> &out, std::string &error)
{
	int high = -1;
	for (char c : text) {
		if (c == ' ' || c == ':')
			continue;
		int v = hexDigit(c);
		if (v < 0) {
			error = fmt::format("'{}' is not a hex digit", c);
			return false;
		}
		if (high < 0) {
			high = v;
		} else {
			out.push_back(static_cast<uint8_t>(high << 4 | v));
			high = -1;
		}
	}
	if (high >= 0) {
		error = "an odd number of hex digits";
		return false;
	}
	return true;
}

bool parseEscapedBytes(std::string_view text, std::vector<uint8_t> &out, std::string &error)
{
	for (size_t i = 0; i < text.size(); i++) {
		char c = text[i];
		if (c != '\\') {
			out.push_back(static_cast<uint8_t>(c));
			continue;
		}
		if (++i == text.size()) {
			error = "a trailing backslash";
			return false;
		}
		switch (text[i]) {
		case 'n':
			out.push_back('\n');
			break;
		case 'r':
			out.push_back('\r');
			break;
		case 't':
			out.push_back('\t');
			break;
		case '0':
			out.push_back(0);
			break;
		case '\\':
		case '"':
			out.push_back(static_cast<uint8_t>(text[i]));
			break;
		case 'x':
			if (i + 2 >= text.size() || hexDigit(text[i + 1]) < 0 || hexDigit(text[i + 2]) < 0) {
				error = "\\x needs two hex digits";
				return false;
			}
			out.push_back(static_cast<uint8_t>(hexDigit(text[i + 1]) << 4 | hexDigit(text[i + 2])));
			i += 2;
			break;
		default:
			error = fmt::format("unknown escape '\\{}'", text[i]);
			return false;
		}
	}
	return true;
}

std::string joinInjectArgs(const std::vector<std::string> &words, size_t first)
{
	std::string joined;
	for (size_t i = first; i < words.size(); i++)
		joined += (i > first ? " " : "") + words[i];
	return joined;
}

bool parseInjectBytes(const std::vector<std::string> &words, std::vector<uint8_t> &out, std::string &error)
{
	std::string joined = joinInjectArgs(words);
	return !words.empty() && words[0] == "hex" ? parseHexBytes(joined, out, error)
						   : parseEscapedBytes(joined, out, error);
}

} // namespace devemu
