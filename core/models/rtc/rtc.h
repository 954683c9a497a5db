// SPDX-License-Identifier: MIT
// rtc: how an rtc model is built (its options), and its factory (exposed for unit tests).
#pragma once

#include "devemu/model.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace devemu {

/* How an rtc model is built; the registry fills it from the device options. */
struct RtcConfig {
	std::function<int64_t()> clock; /* host CLOCK_REALTIME in ns; empty: the real one */
	std::string statePath; /* keeps the offset across restarts; empty: none */
	bool updateIrq = true; /* false: RTC_UIE_ON fails with EINVAL (clients busy-wait) */
	unsigned maxUserFreq = 64; /* like /sys/class/rtc/rtcN/max_user_freq */
};

/* Reads nothing yet: start() loads the state file (and fails when it cannot be read). */
std::unique_ptr<Model> makeRtcModel(DeviceContext &ctx, RtcConfig config);

} // namespace devemu
