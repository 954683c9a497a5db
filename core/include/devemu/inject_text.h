// SPDX-License-Identifier: MIT
// Byte strings as people type them for devemuctl inject: C-style escapes and hex.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace devemu {

/* "a\tb\x41": escapes \n \r \t \0 \\ \xNN. Appends to out; false with a message on a bad escape. */
bool parseEscapedBytes(std::string_view text, std::vector<uint8_t> &out, std::string &error);
/* "68 69:0a": two hex digits a byte; spaces and colons between bytes are ignored. */
bool parseHexBytes(std::string_view text, std::vector<uint8_t> &out, std::string &error);

} // namespace devemu
