// SPDX-License-Identifier: MIT
// readTextFile(): a whole file as a string, or the reason it could not be read.
#include "devemu/text_file.h"

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace devemu {

bool readTextFile(const std::string &path, std::string &text, std::string &error)
{
	std::ifstream in(path, std::ios::binary);
	if (!in) {
		error = fmt::format("{}: cannot open: {}", path, std::strerror(errno));
		return false;
	}
	std::ostringstream s;
	s << in.rdbuf();
	if (in.bad()) {
		error = fmt::format("{}: cannot read", path);
		return false;
	}
	text = s.str();
	return true;
}

} // namespace devemu
