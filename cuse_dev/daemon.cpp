// SPDX-License-Identifier: MIT
// Daemon: builds each device (core, model, transports), reports readiness, reloads, drops privileges, shuts down.
#include "daemon.h"
#include "control/commands.h"
#include "runtime_dirs.h"

#include "devemu/log.h"

#include <sys/capability.h>
#include <sys/prctl.h>
#include <systemd/sd-daemon.h>

#include <grp.h>
#include <pwd.h>

#include <csignal>
#include <cstring>

namespace devemu {

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

int Daemon::add(const DeviceSpec &spec, Settled onSettled, std::string &error)
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

	TransportKinds kinds = spec.transports.value_or(config_.transports);
	bool combined = kinds.size() > 1;
	for (TransportKind kind : kinds) {
		std::string why;
		if (kind == TransportKind::Auto)
			kind = cuseAvailable(why) ? TransportKind::Cuse : TransportKind::Fuse;
		else if (kind == TransportKind::Cuse && !cuseAvailable(why))
			return fail(-ENODEV,
				    fmt::format("device '{}': --transport cuse: {}; use --transport fuse for the "
						"FUSE fallback",
						spec.name, why));
		/* Exposed through two transports at once, the kernel shim's node is NAMEk. */
		std::string nodeName = combined && kind == TransportKind::Kshim ? spec.name + "k" : spec.name;
		NodeSettings node{ nodeName, spec.mode.value_or(config_.mode), spec.uid.value_or(config_.uid),
				   spec.gid.value_or(config_.gid), spec.fifo, combined };
		TransportParts parts{ dev.strand, *dev.core, node, config_.busyPoll };
		std::unique_ptr<Transport> transport;
		try {
			switch (kind) {
			case TransportKind::Cuse:
				transport = makeCuseTransport(parts);
				break;
			case TransportKind::Kshim:
				transport = makeKshimTransport(parts);
				break;
			default:
				transport = makeFuseTransport(parts);
				DEVEMU_LOG(Warning, "daemon",
					   "device '{}': serving through the FUSE fallback ({}){}. {}", spec.name,
					   runtimeDir() + "/" + nodeName, why.empty() ? "" : " because " + why,
					   kFuseFallbackLimits);
				break;
			}
		} catch (const std::exception &e) {
			return fail(-ENOMEM, fmt::format("device '{}': {}", spec.name, e.what()));
		}
		Transport &t = *transport;
		dev.transports.push_back(std::move(transport));
		dev.waiting++;
		std::string startError;
		int ret =
			t.start([this, id, &t](int err, const std::string &message) { nodeReady(id, t, err, message); },
				[this, id, &t](int err) {
					DEVEMU_LOG(Error, "daemon", "the kernel ended the session of {} ({})",
						   t.nodePath(), strerror(-err));
					/* Not from inside the transport's own callback: it is about to be destroyed. */
					asio::post(io_, [this, id] { eraseDevice(id, -ENODEV); });
				},
				startError);
		if (ret < 0)
			return fail(ret, fmt::format("device '{}': {}", spec.name, startError));
	}
	dev.onSettled = std::move(onSettled);
	return 0;
}

void Daemon::nodeReady(uint64_t id, Transport &transport, int err, const std::string &message)
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
	DEVEMU_LOG(Info, "daemon", "serving {} (model {}, transport {})", transport.nodePath(), dev->spec.model,
		   transportName(transport.kind()));
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
	for (auto &t : dev.transports)
		t->stop();
	dev.transports.clear();
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
		int ret = add(
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

	if (userInstance()) {
		if (!userRuntimeFromXdg())
			DEVEMU_LOG(Warning, "daemon", "XDG_RUNTIME_DIR is not set: using {} instead", runtimeDir());
		DEVEMU_LOG(Info, "daemon", "running as uid {}: control socket {}, FUSE nodes under {}", geteuid(),
			   config_.controlPath, runtimeDir());
	}
	if (config_.controlPath != "none") {
		std::string error;
		if (config_.controlPath == defaultControlPath() && ensureRuntimeDir(error) < 0) {
			DEVEMU_LOG(Error, "daemon", "control socket: {} (use --control PATH, or --control none)",
				   error);
			return 1;
		}
		control_ = std::make_unique<ControlServer>(
			io_, [this](const nlohmann::json &request, std::function<void(nlohmann::json)> reply) {
				runControlCommand(*this, request, std::move(reply));
			});
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
		int ret = add(
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
