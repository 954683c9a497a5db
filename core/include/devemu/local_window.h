// SPDX-License-Identifier: MIT
// LocalWindow: an in-process device window and its driver, attached to a core.
#pragma once

#include "devemu/device_core.h"
#include "devemu/window_driver.h"

#include <memory>
#include <string>

namespace devemu {

/*
 * A memfd window on a core and the user-space driver that submits through it:
 * what devemud's CUSE and FUSE transports serve a node with, and what the unit
 * tests drive a model with. The doorbell is a direct call into the core and the
 * interrupt a callback into the driver: no thread hop. The core must outlive it.
 */
class LocalWindow
{
public:
	/*
	 * Throws std::system_error when the window cannot be created. extraFeatures: offered beyond
	 * what the driver supports (the unit tests offer DEVEMU_F_STREAM and play the FIFOs' driver side).
	 */
	LocalWindow(DeviceCore &core, const std::string &name, const WindowGeometry &geometry = {},
		    uint64_t extraFeatures = 0);
	~LocalWindow();
	LocalWindow(const LocalWindow &) = delete;
	LocalWindow &operator=(const LocalWindow &) = delete;

	Window &window() { return window_; }
	WindowDriver &driver() { return *driver_; }

private:
	DeviceCore &core_;
	Window window_;
	std::unique_ptr<WindowDriver> driver_;
	unsigned windowIndex_ = 0;
};

} // namespace devemu
