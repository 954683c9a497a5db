// SPDX-License-Identifier: MIT
// LocalWindow: creates the memfd window, wires its driver to the core's doorbell and interrupt.
#include "devemu/local_window.h"

#include <system_error>

namespace devemu {

LocalWindow::LocalWindow(DeviceCore &core, const std::string &name, const WindowGeometry &geometry,
			 uint64_t extraFeatures)
	: core_(core)
{
	static uint32_t nextId = 0;
	int ret = Window::create(geometry, name, nextId++, window_);
	if (ret < 0)
		throw std::system_error(-ret, std::generic_category(), "cannot create the device window");
	driver_ = std::make_unique<WindowDriver>(window_, [this] { core_.doorbell(); });
	window_.regs().features_offered |= extraFeatures;
	windowIndex_ = core_.attachWindow(window_, [this](uint32_t isr) { driver_->interrupt(isr); });
}

LocalWindow::~LocalWindow()
{
	core_.detachWindow(windowIndex_);
}

} // namespace devemu
