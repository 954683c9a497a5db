// SPDX-License-Identifier: MIT
// The control commands (list, stats, add, remove, inject, fault, version), answered from a daemon's device set.
#pragma once

#include "device_set.h"

#include <nlohmann/json.hpp>

#include <functional>

namespace devemu {

/* Answers one request by calling reply once, now or (add: once the node exists) later. */
void runControlCommand(DeviceSet &devices, const nlohmann::json &request, std::function<void(nlohmann::json)> reply);

} // namespace devemu
