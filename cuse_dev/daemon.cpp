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
	int ret = Window::create(WindowGeometry{}, spec.name, nextId_++, dev.window);
	if (ret < 0) {
		DEVEMU_LOG(Error, "daemon", "device '{}': cannot create its window: {}", spec.name, strerror(-ret));
		return ret;
	}
	dev.core = std::make_unique<DeviceCore>(dev.strand, spec.name, dev.window);
	/* In-process, the doorbell is a direct call and the interrupt a callback: no thread hop. */
	dev.driver = std::make_unique<WindowDriver>(dev.window, [core = dev.core.get()] { core->doorbell(); });
	dev.core->setInterruptHandler([driver = dev.driver.get()](uint32_t isr) { driver->interrupt(isr); });

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

	Transport transport = spec.transport.value_or(config_.transport);
	std::string why;
	if (transport == Transport::Auto)
		transport = cuseAvailable(why) ? Transport::Cuse : Transport::Fuse;
	else if (transport == Transport::Cuse && !cuseAvailable(why)) {
		DEVEMU_LOG(Error, "daemon", "device '{}': --transport cuse: {}; use --transport fuse for the FUSE fallback",
			   spec.name, why);
		return -ENODEV;
	}
	dev.transport = transport;
	NodeSettings node{ spec.name, spec.mode.value_or(config_.mode), spec.uid.value_or(config_.uid),
			   spec.gid.value_or(config_.gid) };
	FrontendParts parts{ dev.strand, dev.window, *dev.core, *dev.driver, node };
	dev.frontend = transport == Transport::Cuse ? makeCuseFrontend(parts) : makeFuseFrontend(parts);
	if (transport == Transport::Fuse)
		DEVEMU_LOG(Warning, "daemon", "device '{}': serving through the FUSE fallback (/run/devemu/{}){}. {}",
			   spec.name, spec.name, why.empty() ? "" : " because " + why, kFuseFallbackLimits);

	std::string error;
	ret = dev.frontend->start(
		[this, &dev](int err, const std::string &message) { deviceReady(dev, err, message); },
		[this, &dev](int err) {
			DEVEMU_LOG(Error, dev.spec.name, "the kernel ended the session ({}); the node is gone",
				   strerror(-err));
			removeDevice(dev, -ENODEV);
		},
		error);
	if (ret < 0) {
		DEVEMU_LOG(Error, "daemon", "device '{}': {}", spec.name, error);
		dev.frontend.reset();
		return ret;
	}
	waiting_++;
	return 0;
}

void Daemon::deviceReady(ServedDevice &dev, int err, const std::string &message)
{
	if (err < 0) {
		DEVEMU_LOG(Error, "daemon", "device '{}': {}", dev.spec.name, message);
		shutdown(1);
		return;
	}
	dev.ready = true;
	DEVEMU_LOG(Info, "daemon", "serving {} (model {}, transport {})", dev.frontend->nodePath(), dev.spec.model,
		   dev.frontend->transport());
	if (--waiting_ == 0 && !stopping_) {
		sd_notify(0, "READY=1");
		if (onReady_)
			onReady_();
	}
}

void Daemon::removeDevice(ServedDevice &dev, int err)
{
	/* Answer whatever is parked first, then take the node away. */
	if (dev.core && !dev.core->stopped())
		dev.core->stop(err);
	if (dev.frontend) {
		dev.frontend->stop();
		dev.frontend.reset();
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
