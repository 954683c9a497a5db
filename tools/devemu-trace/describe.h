// SPDX-License-Identifier: MIT
// One trace operation in words, as devemu-trace print shows it.
#pragma once

#include "trace/trace.h"

#include <string>

namespace devemu::trace {

/* "+0.200000  file 0  read 4 bytes \"OK\\r\\n\"": the delay, the file, what happened, in words. */
std::string describeOp(const TraceOp &op);

} // namespace devemu::trace
