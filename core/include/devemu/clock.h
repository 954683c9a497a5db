// SPDX-License-Identifier: MIT
// Clock readings in nanoseconds, for models that keep time (rtc, watchdog, evdev timestamps).
#pragma once

#include <time.h>

#include <cstdint>

namespace devemu {

inline constexpr int64_t kNsPerSec = 1'000'000'000;
inline constexpr int64_t kNsPerMs = 1'000'000;

/* clock_gettime(id) in nanoseconds. */
inline int64_t clockNs(clockid_t id)
{
	timespec ts;
	clock_gettime(id, &ts);
	return int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}
inline int64_t realtimeNs()
{
	return clockNs(CLOCK_REALTIME);
}
inline int64_t monotonicNs()
{
	return clockNs(CLOCK_MONOTONIC);
}

} // namespace devemu
