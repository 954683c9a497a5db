// SPDX-License-Identifier: MIT
// Daemon: the devices devemud serves, their lifecycle, signals and readiness.
#pragma once

#include "config.h"
#include "frontend.h"

#include "devemu/asio.h"
#include "devemu/device_core.h"
#include "devemu/window.h"
#include "devemu/window_driver.h"

#include <functional>
#include <list>
#include <memory>

namespace devemu {

/* One served device: its core and model, and one frontend (node) per transport. */
struct ServedDevice {
	ServedDevice(asio::io_context &io, const DeviceSpec &spec) : spec(spec), strand(io.get_executor()) {}
	DeviceSpec spec;
	Strand strand;
	std::unique_ptr<DeviceCore> core;
	std::vector<std::unique_ptr<Frontend>> frontends; /* declared after core: destroyed first */
};

class Daemon
{
public:
	explicit Daemon(DaemonConfig config);
	~Daemon();
	/* Serves until SIGTERM/SIGINT. onReady runs once every node exists. Returns the exit status. */
	int run(std::function<void()> onReady);

private:
	int addDevice(const DeviceSpec &spec);
	void nodeReady(ServedDevice &dev, Frontend &frontend, int err, const std::string &message);
	void shutdown(int status);
	void removeDevice(ServedDevice &dev, int err);

	DaemonConfig config_;
	asio::io_context io_;
	asio::signal_set signals_;
	std::list<ServedDevice> devices_;
	std::function<void()> onReady_;
	size_t waiting_ = 0;
	int status_ = 0;
	bool stopping_ = false;
	uint32_t nextId_ = 0;
};

} // namespace devemu
