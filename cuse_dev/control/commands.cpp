// SPDX-License-Identifier: MIT
// The control commands: each request's fields checked, the device set asked, the response built.
#include "commands.h"
#include "control_server.h"
#include "protocol.h"

#include <fmt/core.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

namespace devemu {

namespace {

using json = nlohmann::json;
using Reply = std::function<void(json)>;

/* errno names devemuctl accepts for --errno, besides numbers. */
constexpr std::pair<const char *, int> kErrnoNames[] = {
	{ "EPERM", EPERM },	    { "ENOENT", ENOENT },	{ "EINTR", EINTR },   { "EIO", EIO },
	{ "ENXIO", ENXIO },	    { "E2BIG", E2BIG },		{ "EBADF", EBADF },   { "EAGAIN", EAGAIN },
	{ "ENOMEM", ENOMEM },	    { "EACCES", EACCES },	{ "EFAULT", EFAULT }, { "EBUSY", EBUSY },
	{ "ENODEV", ENODEV },	    { "EINVAL", EINVAL },	{ "ENOSPC", ENOSPC }, { "EPIPE", EPIPE },
	{ "ENOTTY", ENOTTY },	    { "ETIMEDOUT", ETIMEDOUT }, { "EPROTO", EPROTO }, { "ECONNRESET", ECONNRESET },
	{ "EOVERFLOW", EOVERFLOW }, { "EREMOTEIO", EREMOTEIO }, { "ENOSYS", ENOSYS }, { "EOPNOTSUPP", EOPNOTSUPP },
};

bool parseErrno(const json &value, int &err)
{
	if (value.is_number_integer()) {
		err = value.get<int>();
		return err > 0 && err < 4096;
	}
	if (!value.is_string())
		return false;
	std::string name = value.get<std::string>();
	for (const auto &[n, v] : kErrnoNames)
		if (name == n) {
			err = v;
			return true;
		}
	return false;
}

json ok(json body = json::object())
{
	body[key::ok] = true;
	return body;
}

json describe(const ServedDevice &dev)
{
	json nodes = json::array(), transports = json::array();
	for (const auto &t : dev.transports) {
		nodes.push_back(t->nodePath());
		transports.push_back(transportName(t->kind()));
	}
	return { { key::name, dev.spec.name },
		 { key::model, dev.spec.model },
		 { key::transports, transports },
		 { key::nodes, nodes },
		 { key::state, dev.state },
		 { key::openFiles, dev.core ? dev.core->openFiles() : 0 },
		 { key::waitingRequests, dev.core ? dev.core->waitingCalls() : 0 },
		 { key::fromConfig, dev.spec.fromFile } };
}

json stats(const ServedDevice &dev)
{
	const DeviceStats &s = dev.core->stats();
	json ops = json::object();
	for (int op = 0; op < DeviceStats::OpCount; op++) {
		json histogram = json::array();
		for (size_t b = 0; b < DeviceStats::kLatencyBuckets; b++)
			if (s.latency[op][b])
				histogram.push_back(
					{ { key::belowUs, b + 1 < DeviceStats::kLatencyBuckets ? json(uint64_t(1) << b)
											       : json(nullptr) },
					  { key::count, s.latency[op][b] } });
		ops[DeviceStats::opName(static_cast<DeviceStats::Op>(op))] = { { key::requests, s.requests[op] },
									       { key::inKernel, s.inKernel[op] },
									       { key::errors, s.errors[op] },
									       { key::latency, histogram } };
	}
	json faults = json::array();
	for (const auto &f : dev.core->faults())
		faults.push_back({ { key::op, DeviceStats::opName(f.op) },
				   { key::errnoValue, f.error },
				   { key::delayMs, f.delay.count() },
				   { key::shortLen, f.shortLen ? json(*f.shortLen) : json(nullptr) },
				   { key::remaining, f.count },
				   { key::hits, f.hits } });
	return { { key::name, dev.spec.name },
		 { key::operations, ops },
		 { key::bytesIn, s.bytesIn },
		 { key::bytesOut, s.bytesOut },
		 { key::opens, s.opens },
		 { key::openFiles, dev.core->openFiles() },
		 { key::waited, s.parked },
		 { key::cancelled, s.cancelled },
		 { key::protocolErrors, s.protocolErrors },
		 { key::dropped, dev.core->model() ? dev.core->model()->dropped() : 0 },
		 { key::faults, faults } };
}

/* The device a request names, or nullptr after replying why not. */
ServedDevice *namedDevice(DeviceSet &devices, const json &request, const Reply &reply)
{
	std::string name = request.value(key::device, "");
	ServedDevice *dev = devices.find(name);
	if (!dev)
		reply(controlError(name.empty() ? "no device given" : fmt::format("no device '{}'", name)));
	return dev;
}

void version(DeviceSet &, const json &, Reply reply)
{
	reply(ok({ { key::version, DEVEMU_VERSION }, { key::protocol, kControlProtocolVersion } }));
}

void list(DeviceSet &devices, const json &, Reply reply)
{
	json list = json::array();
	for (const auto &dev : devices.devices())
		list.push_back(describe(dev));
	reply(ok({ { key::devices, list } }));
}

void showStats(DeviceSet &devices, const json &request, Reply reply)
{
	if (ServedDevice *dev = namedDevice(devices, request, reply))
		reply(ok(stats(*dev)));
}

void add(DeviceSet &devices, const json &request, Reply reply)
{
	DeviceSpec spec;
	std::string error;
	if (!parseDeviceSpec(request.value(key::spec, ""), spec, error))
		return reply(controlError(error));
	if (OptionCheck check = checkModelOptions(spec); !check.error.empty())
		return reply(controlError(check.error));
	int ret = devices.add(
		spec,
		[&devices, reply, name = spec.name](int err, const std::string &message) {
			if (err < 0)
				return reply(controlError(message));
			ServedDevice *dev = devices.find(name);
			reply(ok({ { key::device, dev ? describe(*dev) : json(nullptr) } }));
		},
		error);
	if (ret < 0)
		reply(controlError(error));
}

void remove(DeviceSet &devices, const json &request, Reply reply)
{
	if (ServedDevice *dev = namedDevice(devices, request, reply)) {
		std::string name = dev->spec.name;
		size_t open = dev->core->openFiles();
		/* Waiting callers get ENODEV at once; the node goes away under open files. */
		devices.remove(*dev);
		reply(ok({ { key::removed, name }, { key::openFiles, open } }));
	}
}

void inject(DeviceSet &devices, const json &request, Reply reply)
{
	if (ServedDevice *dev = namedDevice(devices, request, reply)) {
		std::vector<std::string> args = request.value(key::args, std::vector<std::string>{});
		std::string message;
		int ret = dev->core->inject(args, message);
		if (ret < 0)
			return reply(controlError(message));
		reply(ok({ { key::reply, message } }));
	}
}

void fault(DeviceSet &devices, const json &request, Reply reply)
{
	ServedDevice *dev = namedDevice(devices, request, reply);
	if (!dev)
		return;
	if (request.value(key::clear, false)) {
		dev->core->clearFaults();
		return reply(ok({ { key::faults, 0 } }));
	}
	std::string opName = request.value(key::op, "");
	int op = 0;
	while (op < DeviceStats::OpCount && opName != DeviceStats::opName(static_cast<DeviceStats::Op>(op)))
		op++;
	if (op >= DeviceStats::Poll + 1 || op == DeviceStats::Release)
		return reply(controlError(fmt::format("op '{}': expected read, write, ioctl, open or poll", opName)));
	FaultSpec fault;
	fault.op = static_cast<DeviceStats::Op>(op);
	int kinds = 0;
	if (request.contains(key::errnoValue)) {
		kinds++;
		if (!parseErrno(request[key::errnoValue], fault.error))
			return reply(controlError(fmt::format("errno {}: expected a name such as EIO or a number",
							      request[key::errnoValue].dump())));
	}
	if (request.contains(key::delayMs)) {
		kinds++;
		int64_t ms = request[key::delayMs].get<int64_t>();
		if (ms <= 0 || ms > 3600000)
			return reply(controlError("delay: expected 1 ms to 1 hour"));
		fault.delay = std::chrono::milliseconds(ms);
	}
	if (request.contains(key::shortLen)) {
		kinds++;
		if (fault.op != DeviceStats::Read && fault.op != DeviceStats::Write)
			return reply(controlError("short: only for read and write"));
		fault.shortLen = request[key::shortLen].get<uint32_t>();
	}
	if (kinds != 1)
		return reply(controlError("give exactly one of errno, delay or short"));
	fault.count = request.value(key::count, int64_t(-1));
	if (fault.count == 0 || fault.count < -1)
		return reply(controlError("count: expected a positive number"));
	dev->core->setFault(fault);
	reply(ok({ { key::device, dev->spec.name }, { key::op, opName } }));
}

using Command = void (*)(DeviceSet &, const json &, Reply);
constexpr std::pair<const char *, Command> kCommands[] = {
	{ cmd::list, &list },	  { cmd::stats, &showStats }, { cmd::add, &add },	  { cmd::remove, &remove },
	{ cmd::inject, &inject }, { cmd::fault, &fault },     { cmd::version, &version },
};

} // namespace

void runControlCommand(DeviceSet &devices, const json &request, Reply reply)
{
	std::string command = request.value(key::command, "");
	for (const auto &[name, run] : kCommands)
		if (command == name)
			return run(devices, request, std::move(reply));
	reply(controlError(
		fmt::format("unknown command '{}' (list, stats, add, remove, inject, fault, version)", command)));
}

} // namespace devemu
