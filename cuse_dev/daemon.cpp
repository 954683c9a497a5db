// SPDX-License-Identifier: MIT
// Daemon: builds each device (core, model, frontends), reports readiness, reloads, answers devemuctl, shuts down.
#include "daemon.h"

#include "devemu/log.h"

#include <sys/capability.h>
#include <sys/prctl.h>
#include <systemd/sd-daemon.h>

#include <grp.h>
#include <pwd.h>

#include <csignal>
#include <cstring>

namespace devemu {

namespace {

/* errno names devemuctl accepts for --errno, besides numbers. */
constexpr std::pair<const char *, int> kErrnoNames[] = {
	{ "EPERM", EPERM },	    { "ENOENT", ENOENT },	{ "EINTR", EINTR },   { "EIO", EIO },
	{ "ENXIO", ENXIO },	    { "E2BIG", E2BIG },		{ "EBADF", EBADF },   { "EAGAIN", EAGAIN },
	{ "ENOMEM", ENOMEM },	    { "EACCES", EACCES },	{ "EFAULT", EFAULT }, { "EBUSY", EBUSY },
	{ "ENODEV", ENODEV },	    { "EINVAL", EINVAL },	{ "ENOSPC", ENOSPC }, { "EPIPE", EPIPE },
	{ "ENOTTY", ENOTTY },	    { "ETIMEDOUT", ETIMEDOUT }, { "EPROTO", EPROTO }, { "ECONNRESET", ECONNRESET },
	{ "EOVERFLOW", EOVERFLOW }, { "EREMOTEIO", EREMOTEIO }, { "ENOSYS", ENOSYS }, { "EOPNOTSUPP", EOPNOTSUPP },
};

bool parseErrno(const nlohmann::json &value, int &err)
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

nlohmann::json ok(nlohmann::json body = nlohmann::json::object())
{
	body["ok"] = true;
	return body;
}

} // namespace

Daemon::Daemon(DaemonConfig config) : config_(std::move(config)), signals_(io_, SIGINT, SIGTERM), hangup_(io_, SIGHUP)
{}

Daemon::~Daemon()
{
	for (auto &dev : devices_)
		removeDevice(dev, -ENODEV);
}

ServedDevice *Daemon::find(std::string_view name)
{
	for (auto &dev : devices_)
		if (dev.spec.name == name)
			return &dev;
	return nullptr;
}

ServedDevice *Daemon::findId(uint64_t id)
{
	for (auto &dev : devices_)
		if (dev.id == id)
			return &dev;
	return nullptr;
}

int Daemon::addDevice(const DeviceSpec &spec, std::function<void(int, const std::string &)> onSettled,
		      std::string &error)
{
	if (find(spec.name)) {
		error = fmt::format("device '{}' exists already", spec.name);
		return -EEXIST;
	}
	const ModelInfo *info = ModelRegistry::builtin().find(spec.model);
	if (!info) {
		error = fmt::format("device '{}': unknown model '{}'", spec.name, spec.model);
		return -EINVAL;
	}
	ServedDevice &dev = devices_.emplace_back(io_, spec, nextId_++);
	uint64_t id = dev.id;
	auto fail = [&](int err, std::string message) {
		error = std::move(message);
		eraseDevice(id, -ENODEV);
		return err;
	};
	dev.core = std::make_unique<DeviceCore>(dev.strand, spec.name);
	ModelOptions options(spec.name, spec.model, spec.options);
	std::unique_ptr<Model> model;
	try {
		model = info->factory(options, *dev.core);
	} catch (const std::exception &e) {
		options.fail("?", e.what());
	}
	if (std::string err = options.error(); !err.empty() || !model)
		return fail(-EINVAL, err.empty() ? "device '" + spec.name + "': model failed to start" : err);
	/* Only a device that will serve takes its resources (sockets, files, timers). */
	std::string startError;
	if (int err = model->start(startError); err < 0)
		return fail(err, fmt::format("device '{}': {}", spec.name, startError));
	dev.core->setModel(std::move(model));

	Transports transports = spec.transports.value_or(config_.transports);
	bool combined = transports.size() > 1;
	for (Transport transport : transports) {
		std::string why;
		if (transport == Transport::Auto)
			transport = cuseAvailable(why) ? Transport::Cuse : Transport::Fuse;
		else if (transport == Transport::Cuse && !cuseAvailable(why))
			return fail(-ENODEV,
				    fmt::format("device '{}': --transport cuse: {}; use --transport fuse for the "
						"FUSE fallback",
						spec.name, why));
		/* Exposed through two drivers at once, the kernel shim's node is NAMEk. */
		std::string nodeName = combined && transport == Transport::Kshim ? spec.name + "k" : spec.name;
		NodeSettings node{ nodeName, spec.mode.value_or(config_.mode), spec.uid.value_or(config_.uid),
				   spec.gid.value_or(config_.gid) };
		FrontendParts parts{ dev.strand, *dev.core, node, config_.busyPoll };
		std::unique_ptr<Frontend> frontend;
		try {
			switch (transport) {
			case Transport::Cuse:
				frontend = makeCuseFrontend(parts);
				break;
			case Transport::Kshim:
				frontend = makeKshimFrontend(parts);
				break;
			default:
				frontend = makeFuseFrontend(parts);
				DEVEMU_LOG(Warning, "daemon",
					   "device '{}': serving through the FUSE fallback (/run/devemu/{}){}. {}",
					   spec.name, nodeName, why.empty() ? "" : " because " + why,
					   kFuseFallbackLimits);
				break;
			}
		} catch (const std::exception &e) {
			return fail(-ENOMEM, fmt::format("device '{}': {}", spec.name, e.what()));
		}
		Frontend &f = *frontend;
		dev.frontends.push_back(std::move(frontend));
		dev.waiting++;
		std::string startError;
		int ret =
			f.start([this, id, &f](int err, const std::string &message) { nodeReady(id, f, err, message); },
				[this, id, &f](int err) {
					DEVEMU_LOG(Error, "daemon", "the kernel ended the session of {} ({})",
						   f.nodePath(), strerror(-err));
					/* Not from inside the frontend's own callback: it is about to be destroyed. */
					asio::post(io_, [this, id] { eraseDevice(id, -ENODEV); });
				},
				startError);
		if (ret < 0)
			return fail(ret, fmt::format("device '{}': {}", spec.name, startError));
	}
	dev.onSettled = std::move(onSettled);
	return 0;
}

void Daemon::nodeReady(uint64_t id, Frontend &frontend, int err, const std::string &message)
{
	ServedDevice *dev = findId(id);
	if (!dev)
		return;
	if (err < 0) {
		std::string why = fmt::format("device '{}': {}", dev->spec.name, message);
		auto settled = std::move(dev->onSettled);
		eraseDevice(id, -ENODEV);
		if (settled)
			settled(err, why);
		return;
	}
	DEVEMU_LOG(Info, "daemon", "serving {} (model {}, transport {})", frontend.nodePath(), dev->spec.model,
		   frontend.transport());
	if (--dev->waiting == 0) {
		dev->state = "serving";
		if (auto settled = std::move(dev->onSettled))
			settled(0, {});
	}
}

void Daemon::removeDevice(ServedDevice &dev, int err)
{
	/* Answer whatever is parked first, then take the nodes away. */
	if (dev.core && !dev.core->stopped())
		dev.core->stop(err);
	for (auto &f : dev.frontends)
		f->stop();
	dev.frontends.clear();
	dev.state = "removed";
}

void Daemon::eraseDevice(uint64_t id, int err)
{
	for (auto it = devices_.begin(); it != devices_.end(); ++it) {
		if (it->id != id)
			continue;
		removeDevice(*it, err);
		devices_.erase(it);
		return;
	}
}

void Daemon::shutdown(int status)
{
	if (stopping_)
		return;
	stopping_ = true;
	status_ = status;
	sd_notify(0, "STOPPING=1");
	for (auto &dev : devices_)
		removeDevice(dev, -EIO);
	devices_.clear();
	if (control_)
		control_->close();
	signals_.cancel();
	hangup_.cancel();
	io_.stop();
}

void Daemon::reload()
{
	if (config_.configPath.empty()) {
		DEVEMU_LOG(Info, "daemon", "SIGHUP: no config file to re-read");
		return;
	}
	DaemonConfig fresh = config_;
	std::string error;
	if (!loadConfigFile(config_.configPath, fresh, error)) {
		DEVEMU_LOG(Error, "daemon", "SIGHUP: keeping the running devices: {}", error);
		return;
	}
	/* Devices from the file that went away or changed go first; untouched ones are not disturbed. */
	std::vector<uint64_t> gone;
	for (auto &dev : devices_) {
		if (!dev.spec.fromFile)
			continue;
		auto it = std::find_if(fresh.devices.begin(), fresh.devices.end(),
				       [&](const DeviceSpec &s) { return s.name == dev.spec.name; });
		if (it == fresh.devices.end() || !(*it == dev.spec))
			gone.push_back(dev.id);
	}
	for (uint64_t id : gone) {
		DEVEMU_LOG(Info, "daemon", "SIGHUP: removing {}", findId(id)->spec.name);
		eraseDevice(id, -ENODEV);
	}
	for (const auto &spec : fresh.devices) {
		if (!spec.fromFile || find(spec.name))
			continue;
		std::string name = spec.name;
		int ret = addDevice(
			spec,
			[name](int err, const std::string &message) {
				if (err < 0)
					DEVEMU_LOG(Error, "daemon", "SIGHUP: {}", message);
				else
					DEVEMU_LOG(Info, "daemon", "SIGHUP: added {}", name);
			},
			error);
		if (ret < 0)
			DEVEMU_LOG(Error, "daemon", "SIGHUP: {}", error);
	}
	config_.devices = fresh.devices;
}

int Daemon::dropPrivileges(std::string &error)
{
	uid_t uid = *config_.runUid;
	gid_t gid = config_.runGid.value_or(uid);
	/*
	 * Keep only what serving still needs: unmounting FUSE nodes and the kernel
	 * shim's control ioctls (CAP_SYS_ADMIN), opening /dev/cuse and creating
	 * /run/devemu entries for devices added later (CAP_DAC_OVERRIDE), and
	 * giving their nodes an owner and mode (CAP_CHOWN, CAP_FOWNER).
	 */
	const cap_value_t keep[] = { CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER };
	if (prctl(PR_SET_KEEPCAPS, 1) < 0) {
		error = fmt::format("prctl(PR_SET_KEEPCAPS): {}", strerror(errno));
		return -errno;
	}
	passwd *pw = getpwuid(uid);
	if ((pw ? initgroups(pw->pw_name, gid) : setgroups(0, nullptr)) < 0 || setresgid(gid, gid, gid) < 0 ||
	    setresuid(uid, uid, uid) < 0) {
		error = fmt::format("cannot switch to uid {} gid {}: {}", uid, gid, strerror(errno));
		return -errno;
	}
	cap_t caps = cap_init();
	cap_set_flag(caps, CAP_PERMITTED, std::size(keep), keep, CAP_SET);
	cap_set_flag(caps, CAP_EFFECTIVE, std::size(keep), keep, CAP_SET);
	int ret = cap_set_proc(caps);
	cap_free(caps);
	if (ret < 0) {
		error = fmt::format("cannot keep the needed capabilities: {}", strerror(errno));
		return -errno;
	}
	prctl(PR_SET_KEEPCAPS, 0);
	DEVEMU_LOG(Info, "daemon", "now running as uid {} gid {}", uid, gid);
	return 0;
}

nlohmann::json Daemon::describe(const ServedDevice &dev) const
{
	nlohmann::json nodes = nlohmann::json::array(), transports = nlohmann::json::array();
	for (const auto &f : dev.frontends) {
		nodes.push_back(f->nodePath());
		transports.push_back(f->transport());
	}
	return { { "name", dev.spec.name },
		 { "model", dev.spec.model },
		 { "transports", transports },
		 { "nodes", nodes },
		 { "state", dev.state },
		 { "open_files", dev.core ? dev.core->openFiles() : 0 },
		 { "waiting_requests", dev.core ? dev.core->parkedRequests() : 0 },
		 { "from_config", dev.spec.fromFile } };
}

nlohmann::json Daemon::stats(const ServedDevice &dev) const
{
	const DeviceStats &s = dev.core->stats();
	nlohmann::json ops = nlohmann::json::object();
	for (int op = 0; op < DeviceStats::OpCount; op++) {
		nlohmann::json histogram = nlohmann::json::array();
		for (size_t b = 0; b < DeviceStats::kLatencyBuckets; b++)
			if (s.latency[op][b])
				histogram.push_back({ { "below_us", b + 1 < DeviceStats::kLatencyBuckets
									    ? nlohmann::json(uint64_t(1) << b)
									    : nlohmann::json(nullptr) },
						      { "count", s.latency[op][b] } });
		ops[DeviceStats::opName(static_cast<DeviceStats::Op>(op))] = { { "requests", s.requests[op] },
									       { "errors", s.errors[op] },
									       { "latency", histogram } };
	}
	nlohmann::json faults = nlohmann::json::array();
	for (const auto &f : dev.core->faults())
		faults.push_back({ { "op", DeviceStats::opName(f.op) },
				   { "errno", f.error },
				   { "delay_ms", f.delay.count() },
				   { "short", f.shortLen ? nlohmann::json(*f.shortLen) : nlohmann::json(nullptr) },
				   { "remaining", f.count },
				   { "hits", f.hits } });
	return { { "name", dev.spec.name },
		 { "operations", ops },
		 { "bytes_in", s.bytesIn },
		 { "bytes_out", s.bytesOut },
		 { "opens", s.opens },
		 { "open_files", dev.core->openFiles() },
		 { "waited", s.parked },
		 { "cancelled", s.cancelled },
		 { "protocol_errors", s.protocolErrors },
		 { "dropped", dev.core->model() ? dev.core->model()->dropped() : 0 },
		 { "faults", faults } };
}

void Daemon::control(const nlohmann::json &request, Reply reply)
{
	std::string command = request.value("command", "");
	auto device = [&]() -> ServedDevice * {
		std::string name = request.value("device", "");
		ServedDevice *dev = find(name);
		if (!dev)
			reply(controlError(name.empty() ? "no device given" : fmt::format("no device '{}'", name)));
		return dev;
	};
	if (command == "version") {
		reply(ok({ { "version", DEVEMU_VERSION }, { "protocol", kControlProtocolVersion } }));
	} else if (command == "list") {
		nlohmann::json list = nlohmann::json::array();
		for (const auto &dev : devices_)
			list.push_back(describe(dev));
		reply(ok({ { "devices", list } }));
	} else if (command == "stats") {
		if (ServedDevice *dev = device())
			reply(ok(stats(*dev)));
	} else if (command == "add") {
		DeviceSpec spec;
		std::string error;
		if (!parseDeviceSpec(request.value("spec", ""), spec, error))
			return reply(controlError(error));
		if (OptionCheck check = checkModelOptions(spec); !check.error.empty())
			return reply(controlError(check.error));
		int ret = addDevice(
			spec,
			[this, reply, name = spec.name](int err, const std::string &message) {
				if (err < 0)
					return reply(controlError(message));
				ServedDevice *dev = find(name);
				reply(ok({ { "device", dev ? describe(*dev) : nlohmann::json(nullptr) } }));
			},
			error);
		if (ret < 0)
			reply(controlError(error));
	} else if (command == "remove") {
		if (ServedDevice *dev = device()) {
			std::string name = dev->spec.name;
			size_t open = dev->core->openFiles();
			/* Waiting callers get ENODEV at once; the node goes away under open files. */
			eraseDevice(dev->id, -ENODEV);
			reply(ok({ { "removed", name }, { "open_files", open } }));
		}
	} else if (command == "inject") {
		if (ServedDevice *dev = device()) {
			std::vector<std::string> args = request.value("args", std::vector<std::string>{});
			std::string message;
			int ret = dev->core->inject(args, message);
			if (ret < 0)
				return reply(controlError(message));
			reply(ok({ { "reply", message } }));
		}
	} else if (command == "fault") {
		ServedDevice *dev = device();
		if (!dev)
			return;
		if (request.value("clear", false)) {
			dev->core->clearFaults();
			return reply(ok({ { "faults", 0 } }));
		}
		std::string opName = request.value("op", "");
		int op = 0;
		while (op < DeviceStats::OpCount && opName != DeviceStats::opName(static_cast<DeviceStats::Op>(op)))
			op++;
		if (op >= DeviceStats::Poll + 1 || op == DeviceStats::Release)
			return reply(controlError(
				fmt::format("op '{}': expected read, write, ioctl, open or poll", opName)));
		FaultSpec fault;
		fault.op = static_cast<DeviceStats::Op>(op);
		int kinds = 0;
		if (request.contains("errno")) {
			kinds++;
			if (!parseErrno(request["errno"], fault.error))
				return reply(controlError(fmt::format(
					"errno {}: expected a name such as EIO or a number", request["errno"].dump())));
		}
		if (request.contains("delay_ms")) {
			kinds++;
			int64_t ms = request["delay_ms"].get<int64_t>();
			if (ms <= 0 || ms > 3600000)
				return reply(controlError("delay: expected 1 ms to 1 hour"));
			fault.delay = std::chrono::milliseconds(ms);
		}
		if (request.contains("short")) {
			kinds++;
			if (fault.op != DeviceStats::Read && fault.op != DeviceStats::Write)
				return reply(controlError("short: only for read and write"));
			fault.shortLen = request["short"].get<uint32_t>();
		}
		if (kinds != 1)
			return reply(controlError("give exactly one of errno, delay or short"));
		fault.count = request.value("count", int64_t(-1));
		if (fault.count == 0 || fault.count < -1)
			return reply(controlError("count: expected a positive number"));
		dev->core->setFault(fault);
		reply(ok({ { "device", dev->spec.name }, { "op", opName } }));
	} else {
		reply(controlError(fmt::format(
			"unknown command '{}' (list, stats, add, remove, inject, fault, version)", command)));
	}
}

void Daemon::waitSignals()
{
	hangup_.async_wait([this](const boost::system::error_code &ec, int) {
		if (ec)
			return;
		DEVEMU_LOG(Info, "daemon", "SIGHUP: re-reading {}",
			   config_.configPath.empty() ? "(none)" : config_.configPath);
		reload();
		waitSignals();
	});
}

int Daemon::run(std::function<void()> onReady)
{
	onReady_ = std::move(onReady);
	signal(SIGPIPE, SIG_IGN);
	signals_.async_wait([this](const boost::system::error_code &ec, int signo) {
		if (ec)
			return;
		DEVEMU_LOG(Info, "daemon", "{} received: shutting down", strsignal(signo));
		shutdown(0);
	});
	waitSignals();

	if (config_.controlPath != "none") {
		control_ = std::make_unique<ControlServer>(io_, [this](const nlohmann::json &request, Reply reply) {
			control(request, std::move(reply));
		});
		std::string error;
		int ret = control_->listen(config_.controlPath, config_.controlGid, error);
		if (ret == -EADDRINUSE) {
			/* Several daemons on one machine: the first keeps the default socket. */
			DEVEMU_LOG(Warning, "daemon", "{}; this one serves without a control socket", error);
			control_.reset();
		} else if (ret < 0) {
			DEVEMU_LOG(Error, "daemon", "{} (use --control PATH, or --control none)", error);
			return 1;
		}
	}

	auto allStarted = [this] {
		started_ = true;
		if (config_.runUid) {
			std::string error;
			if (dropPrivileges(error) < 0) {
				DEVEMU_LOG(Error, "daemon", "{}", error);
				shutdown(1);
				return;
			}
		}
		sd_notify(0, "READY=1");
		if (onReady_)
			onReady_();
	};
	starting_ = config_.devices.size();
	for (const auto &spec : config_.devices) {
		std::string error;
		int ret = addDevice(
			spec,
			[this, allStarted](int err, const std::string &message) {
				if (stopping_)
					return;
				if (err < 0) {
					DEVEMU_LOG(Error, "daemon", "{}", message);
					shutdown(1);
					return;
				}
				if (--starting_ == 0)
					allStarted();
			},
			error);
		if (ret < 0) {
			DEVEMU_LOG(Error, "daemon", "{}", error);
			shutdown(1);
			return status_;
		}
	}
	if (config_.devices.empty())
		allStarted();
	io_.run();
	return status_;
}

} // namespace devemu
