// SPDX-License-Identifier: MIT
// DeviceSet: the devices a daemon serves (ServedDevice), as the control commands reach them.
#pragma once

#include "config.h"
#include "transports/transport.h"

#include "devemu/asio.h"
#include "devemu/device_core.h"

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace devemu {

/* One served device: its core and model, and one transport (node) per transport kind it asked for. */
struct ServedDevice {
	ServedDevice(asio::io_context &io, const DeviceSpec &spec, uint64_t id)
		: spec(spec), id(id), strand(io.get_executor())
	{}
	DeviceSpec spec;
	uint64_t id;
	Strand strand;
	std::unique_ptr<DeviceCore> core;
	std::vector<std::unique_ptr<Transport>> transports; /* declared after core: destroyed first */
	size_t waiting = 0; /* nodes not ready yet */
	std::string state = "starting";
	/* Runs once when every node exists (err 0) or the device failed (err < 0). */
	std::function<void(int err, const std::string &message)> onSettled;
};

class DeviceSet
{
public:
	/* err 0 once every node of the device exists, else -errno and why. */
	using Settled = std::function<void(int err, const std::string &message)>;

	virtual const std::list<ServedDevice> &devices() const = 0;
	virtual ServedDevice *find(std::string_view name) = 0;
	/* Starts a device: -errno with error filled if it cannot, else onSettled follows. */
	virtual int add(const DeviceSpec &spec, Settled onSettled, std::string &error) = 0;
	/* Stops serving it: waiting callers get ENODEV, its nodes go. */
	virtual void remove(const ServedDevice &dev) = 0;

protected:
	~DeviceSet() = default;
};

} // namespace devemu
