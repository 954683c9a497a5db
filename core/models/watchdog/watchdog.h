// SPDX-License-Identifier: MIT
// watchdog: how a watchdog model is built (its options), and its factory (exposed for unit tests).
#pragma once

#include "devemu/model.h"

#include <functional>
#include <memory>
#include <string>

namespace devemu {

struct WatchdogConfig {
	std::function<int64_t()> clock; /* monotonic ns; empty: CLOCK_MONOTONIC */
	unsigned timeout = 60;
	unsigned pretimeout = 0;
	unsigned minTimeout = 1;
	unsigned maxTimeout = 65535;
	bool nowayout = false;
	std::string identity = "devemu watchdog";
	std::string onExpiry; /* run with /bin/sh -c when the timer expires */
};

std::unique_ptr<Model> makeWatchdogModel(DeviceContext &ctx, WatchdogConfig config);

} // namespace devemu
