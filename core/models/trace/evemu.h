// SPDX-License-Identifier: MIT
// evemu recordings (evemu-record, evemu-describe) read as they are: an input device's description and events.
#pragma once

#include "trace.h"

#include <string>
#include <string_view>

namespace devemu::trace {

/*
 * Reads an evemu file into a trace: its description (N: I: P: B: A: lines)
 * as the answers of the EVIOCG* queries, and each E: line as a struct
 * input_event (64-bit layout, the recorded time stamp) read after the
 * recorded time since the previous event; events at the same time are one
 * read. Errors name the file and the line.
 */
bool parseEvemu(std::string_view text, const std::string &name, Trace &trace, std::string &error);
bool readEvemu(const std::string &path, Trace &trace, std::string &error);

} // namespace devemu::trace
