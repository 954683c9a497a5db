// SPDX-License-Identifier: MIT
// umockdev's ioctl tree files (*.ioctl) read as they are: recorded answers to state-independent ioctls.
#pragma once

#include "trace.h"

#include <string>
#include <string_view>

namespace devemu::trace {

/*
 * Reads an umockdev ioctl file into ioctl operations (file 0, no delay) that
 * replay answers in any order: "@DEV PATH" headers, "NAME[(OFFSET)] RET HEX"
 * lines. Nested (indented) lines, which umockdev writes for USB URB trees, and
 * ioctls the table does not know are errors naming the file and line.
 */
bool parseUmockdevIoctl(std::string_view text, const std::string &name, Trace &trace, std::string &error);
bool readUmockdevIoctl(const std::string &path, Trace &trace, std::string &error);

} // namespace devemu::trace
