// SPDX-License-Identifier: MIT
// LocalPort: an in-process device window with its driver, attached to a core as one port.
#include "transport.h"

#include <cstring>
#include <system_error>

namespace devemu {

LocalPort::LocalPort(DeviceCore &core, const std::string &name) : core_(core)
{
	static uint32_t nextId = 0;
	int ret = Window::create(WindowGeometry{}, name, nextId++, window_);
	if (ret < 0)
		throw std::system_error(-ret, std::generic_category(), "cannot create the device window");
	driver_ = std::make_unique<WindowDriver>(window_, [this] { core_.doorbell(); });
	port_ = core_.addPort(window_, [this](uint32_t isr) { driver_->interrupt(isr); });
}

LocalPort::~LocalPort()
{
	core_.removePort(port_);
}

} // namespace devemu
