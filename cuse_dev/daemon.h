// SPDX-License-Identifier: MIT
// Daemon: the devices devemud serves, their lifecycle, signals, readiness, reload and the control socket.
#pragma once

#include "config.h"
#include "control/control_server.h"
#include "device_set.h"

#include "devemu/asio.h"

#include <functional>
#include <list>
#include <memory>

namespace devemu {

class Daemon final : private DeviceSet
{
public:
	explicit Daemon(DaemonConfig config);
	~Daemon();
	/* Serves until SIGTERM/SIGINT. onReady runs once every node exists. Returns the exit status. */
	int run(std::function<void()> onReady);

private:
	/* DeviceSet: what the control commands reach. */
	const std::list<ServedDevice> &devices() const override { return devices_; }
	ServedDevice *find(std::string_view name) override;
	int add(const DeviceSpec &spec, Settled onSettled, std::string &error) override;
	void remove(const ServedDevice &dev) override { eraseDevice(dev.id, -ENODEV); }

	void nodeReady(uint64_t id, Transport &transport, int err, const std::string &message);
	void removeDevice(ServedDevice &dev, int err);
	void eraseDevice(uint64_t id, int err);
	ServedDevice *findId(uint64_t id);
	void shutdown(int status);
	void reload();
	void waitSignals();
	int dropPrivileges(std::string &error);

	DaemonConfig config_;
	/* One thread runs the loop: with this hint, work posted from it needs no reactor wake-up (an epoll_ctl per post). */
	asio::io_context io_{ 1 };
	asio::signal_set signals_;
	asio::signal_set hangup_;
	std::unique_ptr<ControlServer> control_;
	std::list<ServedDevice> devices_;
	std::function<void()> onReady_;
	size_t starting_ = 0; /* devices of the initial set not settled yet */
	int status_ = 0;
	bool stopping_ = false;
	bool started_ = false;
	uint64_t nextId_ = 1;
};

} // namespace devemu
