// SPDX-License-Identifier: MIT
// Frontend: what serves a device window as a /dev node (CUSE, or the FUSE fallback).
#pragma once

#include "devemu/device_core.h"
#include "devemu/local_window.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace devemu {

struct NodeSettings {
	std::string name; /* /dev/NAME */
	mode_t mode = 0660;
	uid_t uid = 0;
	gid_t gid = 0;
};

class Frontend
{
public:
	/* err is 0 once the node exists, else -errno with message saying why in the user's terms. */
	using ReadyHandler = std::function<void(int err, const std::string &message)>;
	/* Called if the kernel ends the session on its own (connection aborted, unmounted). */
	using EndHandler = std::function<void(int err)>;

	virtual ~Frontend() = default;
	virtual int start(ReadyHandler onReady, EndHandler onEnd, std::string &error) = 0;
	/* Removes the node; requests still parked must have been answered by the core first. */
	virtual void stop() = 0;
	virtual std::string nodePath() const = 0;
	virtual const char *transport() const = 0;
};

/* What a frontend needs: the device's strand and core (it adds its own window as a port of the core). */
struct FrontendParts {
	Strand strand;
	DeviceCore &core;
	NodeSettings node;
	std::chrono::microseconds busyPoll{ 0 }; /* kshim: spin this long for more work before sleeping */
};

std::unique_ptr<Frontend> makeCuseFrontend(FrontendParts parts);
std::unique_ptr<Frontend> makeFuseFrontend(FrontendParts parts);
std::unique_ptr<Frontend> makeKshimFrontend(FrontendParts parts);

/* Whether CUSE can be used here; when not, why (for the user). Tries modprobe cuse once. */
bool cuseAvailable(std::string &why);

/* The ioctls the FUSE fallback cannot carry, for the warning it prints. */
extern const char *const kFuseFallbackLimits;

} // namespace devemu
