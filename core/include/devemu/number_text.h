// SPDX-License-Identifier: MIT
// Numbers as people type them in model options and devemuctl inject arguments, parsed whole and range-checked.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace devemu {

/*
 * An unsigned integer in C syntax (base 0: decimal, 0x hex, a leading 0 for
 * octal), or in the given base; the whole text, no sign, no spaces, at most
 * max. nullopt otherwise.
 */
std::optional<uint64_t> parseUnsigned(std::string_view text, uint64_t max = UINT64_MAX, int base = 0);
/* A signed integer in C syntax (an optional - or +), from min to max. */
std::optional<int64_t> parseInteger(std::string_view text, int64_t min, int64_t max);
/* A decimal number with an optional fraction and exponent, from min to max. */
std::optional<double> parseReal(std::string_view text, double min, double max);
/* A byte count: decimal or 0x hex, a decimal one may end in k/K, m/M or g/G (x1024 each). */
std::optional<uint64_t> parseSize(std::string_view text);

} // namespace devemu
