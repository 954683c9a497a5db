// SPDX-License-Identifier: MIT
// Reading the line-based recording formats: a whole file, then its lines with their numbers.
#pragma once

#include "devemu/text_file.h"

#include <string>
#include <string_view>

namespace devemu::trace {

/* Reads path whole and parses it with parse(text, path, into, error); false with what is wrong. */
template<typename Into, typename Parse>
bool readAndParse(const std::string &path, Into &into, std::string &error, Parse parse)
{
	std::string text;
	return readTextFile(path, text, error) && parse(text, path, into, error);
}

/* Calls fn(lineNumber, line) for each line (without the newline); stops when fn returns false. */
template<typename Fn>
bool forEachLine(std::string_view text, Fn fn)
{
	unsigned number = 0;
	while (!text.empty()) {
		auto nl = text.find('\n');
		std::string_view line = text.substr(0, nl);
		text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
		number++;
		if (!fn(number, line))
			return false;
	}
	return true;
}

} // namespace devemu::trace
