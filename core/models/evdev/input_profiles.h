// SPDX-License-Identifier: MIT
// evdev: what the device is (keyboard, pen tablet, joystick) from its options: identity, capabilities, axes, keymap.
#pragma once

#include "input_device.h"

#include "devemu/model_registry.h"

#include <optional>
#include <string>

namespace devemu {

/* The input device the options describe (type=, name=, abs_x=...); nullopt with the problem in opts. */
std::optional<InputDevice> inputDeviceFromOptions(ModelOptions &opts, const std::string &deviceName);

} // namespace devemu
