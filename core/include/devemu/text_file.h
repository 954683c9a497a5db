// SPDX-License-Identifier: MIT
// readTextFile(): a whole file as a string, or the reason it could not be read.
#pragma once

#include <string>

namespace devemu {

/* Reads path whole into text; false with "PATH: cannot open: REASON" (or "cannot read") in error. */
bool readTextFile(const std::string &path, std::string &text, std::string &error);

} // namespace devemu
