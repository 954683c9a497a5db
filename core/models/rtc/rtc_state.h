// SPDX-License-Identifier: MIT
// rtc: the state file that keeps the clock's offset from the host clock across restarts (the battery).
#pragma once

#include <cstdint>
#include <string>

namespace devemu {

/* Reads "offset_ns=N" (comments with #); a missing file is offset 0. False with a message. */
bool loadRtcState(const std::string &path, int64_t &offsetNs, std::string &error);
/* Replaces the file atomically (PATH.tmp, then rename). False with a message. */
bool saveRtcState(const std::string &path, int64_t offsetNs, std::string &error);

} // namespace devemu
