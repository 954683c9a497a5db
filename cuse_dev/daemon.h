// SPDX-License-Identifier: MIT
// Daemon: the devices devemud serves, their lifecycle, signals, readiness, reload and the control socket.
#pragma once

#include "config.h"
#include "control/control_server.h"
#include "transports/transport.h"

#include "devemu/asio.h"
#include "devemu/device_core.h"

#include <functional>
#include <list>
#include <memory>

namespace devemu {

/* One served device: its core and model, and one frontend (node) per transport. */
struct ServedDevice {
	ServedDevice(asio::io_context &io, const DeviceSpec &spec, uint64_t id)
		: spec(spec), id(id), strand(io.get_executor())
	{}
	DeviceSpec spec;
	uint64_t id;
	Strand strand;
	std::unique_ptr<DeviceCore> core;
	std::vector<std::unique_ptr<Frontend>> frontends; /* declared after core: destroyed first */
	size_t waiting = 0; /* nodes not ready yet */
	std::string state = "starting";
	/* Runs once when every node exists (err 0) or the device failed (err < 0). */
	std::function<void(int err, const std::string &message)> onSettled;
};

class Daemon
{
public:
	explicit Daemon(DaemonConfig config);
	~Daemon();
	/* Serves until SIGTERM/SIGINT. onReady runs once every node exists. Returns the exit status. */
	int run(std::function<void()> onReady);

private:
	using Reply = std::function<void(nlohmann::json)>;

	/* Starts a device; onSettled reports when its nodes exist or why they do not. */
	int addDevice(const DeviceSpec &spec, std::function<void(int, const std::string &)> onSettled,
		      std::string &error);
	void nodeReady(uint64_t id, Frontend &frontend, int err, const std::string &message);
	void removeDevice(ServedDevice &dev, int err);
	void eraseDevice(uint64_t id, int err);
	ServedDevice *find(std::string_view name);
	ServedDevice *findId(uint64_t id);
	void shutdown(int status);
	void reload();
	void waitSignals();
	int dropPrivileges(std::string &error);

	void control(const nlohmann::json &request, Reply reply);
	nlohmann::json describe(const ServedDevice &dev) const;
	nlohmann::json stats(const ServedDevice &dev) const;

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
