// SPDX-License-Identifier: MIT
// Daemon: builds each device (window, core, model, driver, frontend), reports readiness, shuts down gracefully.
#include "daemon.h"

#include "devemu/log.h"

#include <systemd/sd-daemon.h>

#include <csignal>
#include <cstring>

namespace devemu {

Daemon::Daemon(DaemonConfig config) : config_(std::move(config)), signals_(io_, SIGINT, SIGTERM) {}

Daemon::~Daemon()
{
	for (auto &dev : devices_)
		removeDevice(dev, -ENODEV);
}

int Daemon::addDevice(const DeviceSpec &spec)
{
	ServedDevice &dev = devices_.emplace_back(io_, spec);
	const ModelInfo *info = ModelRegistry::builtin().find(spec.model);
	if (!info) {
		DEVEMU_LOG(Error, "daemon", "device '{}': unknown model '{}'", spec.name, spec.model);
		return -EINVAL;
	}
	dev.core = std::make_unique<DeviceCore>(dev.strand, spec.name);
	ModelOptions options(spec.name, spec.model, spec.options);
	std::unique_ptr<Model> model;
	try {
		model = info->factory(options, *dev.core);
	} catch (const std::exception &e) {
		options.fail("?", e.what());
	}
	if (std::string err = options.error(); !err.empty() || !model) {
		DEVEMU_LOG(Error, "daemon", "{}", err.empty() ? "device '" + spec.name + "': model failed to start" : err);
		return -EINVAL;
	}
	dev.core->setModel(std::move(model));

	Transports transports = spec.transports.value_or(config_.transports);
	bool combined = transports.size() > 1;
	for (Transport transport : transports) {
		std::string why;
		if (transport == Transport::Auto)
			transport = cuseAvailable(why) ? Transport::Cuse : Transport::Fuse;
		else if (transport == Transport::Cuse && !cuseAvailable(why)) {
			DEVEMU_LOG(Error, "daemon",
				   "device '{}': --transport cuse: {}; use --transport fuse for the FUSE fallback", spec.name,
				   why);
			return -ENODEV;
		}
		/* Exposed through two drivers at once, the kernel shim's node is NAMEk. */
		std::string nodeName = combined && transport == Transport::Kshim ? spec.name + "k" : spec.name;
		NodeSettings node{ nodeName, spec.mode.value_or(config_.mode), spec.uid.value_or(config_.uid),
				   spec.gid.value_or(config_.gid) };
		FrontendParts parts{ dev.strand, *dev.core, node };
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
				DEVEMU_LOG(Warning, "daemon", "device '{}': serving through the FUSE fallback (/run/devemu/{}){}. {}",
					   spec.name, nodeName, why.empty() ? "" : " because " + why, kFuseFallbackLimits);
				break;
			}
		} catch (const std::exception &e) {
			DEVEMU_LOG(Error, "daemon", "device '{}': {}", spec.name, e.what());
			return -ENOMEM;
		}
		Frontend &f = *frontend;
		dev.frontends.push_back(std::move(frontend));
		std::string error;
		int ret = f.start([this, &dev, &f](int err, const std::string &message) { nodeReady(dev, f, err, message); },
				  [this, &dev, &f](int err) {
					  DEVEMU_LOG(Error, dev.spec.name, "the kernel ended the session of {} ({})",
						     f.nodePath(), strerror(-err));
					  /* Not from inside the frontend's own callback: it is about to be destroyed. */
					  asio::post(dev.strand, [this, &dev] { removeDevice(dev, -ENODEV); });
				  },
				  error);
		if (ret < 0) {
			DEVEMU_LOG(Error, "daemon", "device '{}': {}", spec.name, error);
			return ret;
		}
		waiting_++;
	}
	return 0;
}

void Daemon::nodeReady(ServedDevice &dev, Frontend &frontend, int err, const std::string &message)
{
	if (err < 0) {
		DEVEMU_LOG(Error, "daemon", "device '{}': {}", dev.spec.name, message);
		shutdown(1);
		return;
	}
	DEVEMU_LOG(Info, "daemon", "serving {} (model {}, transport {})", frontend.nodePath(), dev.spec.model,
		   frontend.transport());
	if (--waiting_ == 0 && !stopping_) {
		sd_notify(0, "READY=1");
		if (onReady_)
			onReady_();
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
	signals_.cancel();
	io_.stop();
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
	for (const auto &spec : config_.devices) {
		if (addDevice(spec) < 0) {
			shutdown(1);
			return status_;
		}
	}
	io_.run();
	return status_;
}

} // namespace devemu
