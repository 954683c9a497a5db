// SPDX-License-Identifier: MIT
// Byte strings as people type them for devemuctl inject: C-style escapes and hex, and the words that carry them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace devemu {

/* "a\tb\x41": escapes \n \r \t \0 \\ \" \xNN. Appends to out; false with a message on a bad escape. */
bool parseEscapedBytes(std::string_view text, std::vector<uint8_t> &out, std::string &error);
/* "68 69:0a": two hex digits a byte; spaces and colons between bytes are ignored. */
bool parseHexBytes(std::string_view text, std::vector<uint8_t> &out, std::string &error);
/* The words of an inject verb from first on, joined by single spaces (as the shell split them). */
std::string joinInjectArgs(const std::vector<std::string> &words, size_t first = 1);
/* The bytes of "data TEXT..." (escapes) or "hex BYTES..." (words[0] says which); false with a message. */
bool parseInjectBytes(const std::vector<std::string> &words, std::vector<uint8_t> &out, std::string &error);

} // namespace devemu
