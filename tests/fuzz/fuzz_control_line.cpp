// SPDX-License-Identifier: MIT
// Fuzz target: one control-socket line (JSON request) decoded and answered against a few live devices.
#include "control/commands.h"
#include "control/control_server.h"

#include "devemu/log.h"
#include "devemu/model_registry.h"

#include <cstdint>
#include <cstdlib>
#include <list>
#include <string>

using namespace devemu;

namespace {

/* Devices with a core and a started model but no node: add is refused, remove forgets one. */
class FuzzDeviceSet final : public DeviceSet
{
public:
	explicit FuzzDeviceSet(asio::io_context &io) : io_(io)
	{
		serve("lo", "loopback", { { "capacity", "64" } });
		serve("kbd", "evdev", { { "type", "keyboard" } });
		serve("bus", "i2c", {});
		serve("rng", "rng", { { "seed", "1" } });
	}

	const std::list<ServedDevice> &devices() const override { return devices_; }
	ServedDevice *find(std::string_view name) override
	{
		for (auto &d : devices_)
			if (d.spec.name == name)
				return &d;
		return nullptr;
	}
	int add(const DeviceSpec &, Settled, std::string &error) override
	{
		error = "the fuzzer serves no new devices";
		return -EPERM;
	}
	void remove(const ServedDevice &dev) override
	{
		devices_.remove_if([&](const ServedDevice &d) { return &d == &dev; });
	}

private:
	void serve(std::string name, std::string model, ModelOptions::Pairs options)
	{
		DeviceSpec spec{ name, model, options };
		auto &dev = devices_.emplace_back(io_, spec, devices_.size() + 1);
		dev.core = std::make_unique<DeviceCore>(dev.strand, name);
		ModelOptions opts(name, model, options);
		auto m = ModelRegistry::builtin().find(model)->factory(opts, *dev.core);
		std::string error;
		if (!m || !opts.error().empty() || m->start(error) != 0)
			abort(); /* the fuzzer's own devices must start */
		dev.core->setModel(std::move(m));
		dev.state = "ready";
	}

	asio::io_context &io_;
	std::list<ServedDevice> devices_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet = (setLogLevel(LogLevel::Error), true);
	(void)quiet;
	asio::io_context io;
	{
		FuzzDeviceSet devices(io);
		int replies = 0;
		auto reply = [&replies](nlohmann::json response) {
			replies++;
			(void)controlResponseLine(response); /* what the session writes back */
		};
		ControlServer::Handler handler = [&devices](const nlohmann::json &request,
							    std::function<void(nlohmann::json)> r) {
			runControlCommand(devices, request, std::move(r));
		};
		handleControlLine(std::string_view(reinterpret_cast<const char *>(data), size), handler, reply);
		io.poll();
		if (replies == 0)
			abort(); /* every request is answered (the session keeps only the first answer) */
	}
	io.poll();
	return 0;
}
