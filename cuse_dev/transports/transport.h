// SPDX-License-Identifier: MIT
// Transport: the daemon object that serves one device as one /dev node, over CUSE, FUSE or the kernel shim.
#pragma once

#include "transport_kind.h"

#include "devemu/asio.h"
#include "devemu/device_core.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace devemu {

struct NodeSettings {
	std::string name; /* /dev/NAME */
	mode_t mode = 0660;
	uid_t uid = 0;
	gid_t gid = 0;
	/* kshim: serve a streaming model's read/write from stream FIFOs (fifo=off: requests) */
	std::optional<bool> fifo;
	bool shared = false; /* another transport serves the same core (--transport cuse,kshim) */
};

/* What a transport needs: the device's strand and core (it attaches its own window to the core). */
struct TransportParts {
	Strand strand;
	DeviceCore &core;
	NodeSettings node;
	std::chrono::microseconds busyPoll{ 0 }; /* kshim: spin this long for more work before sleeping */
};

class Transport
{
public:
	/* err is 0 once the node exists, else -errno with message saying why in the user's terms. */
	using ReadyHandler = std::function<void(int err, const std::string &message)>;
	/* Called if the kernel ends the node on its own (connection aborted, unmounted, shim detached). */
	using EndHandler = std::function<void(int err)>;

	virtual ~Transport() = default;
	/* Starts creating the node: -errno with error filled if it cannot, else onReady follows. */
	virtual int start(ReadyHandler onReady, EndHandler onEnd, std::string &error) = 0;
	/* Removes the node; requests still parked must have been answered by the core first. */
	virtual void stop() = 0;
	virtual TransportKind kind() const = 0;
	/* Where programs open the node: /dev/NAME, or a user's FUSE fallback file under its runtime dir. */
	virtual std::string nodePath() const { return "/dev/" + parts_.node.name; }

protected:
	explicit Transport(TransportParts parts) : parts_(std::move(parts)) {}

	TransportParts parts_;
};

std::unique_ptr<Transport> makeCuseTransport(TransportParts parts);
std::unique_ptr<Transport> makeFuseTransport(TransportParts parts);
std::unique_ptr<Transport> makeKshimTransport(TransportParts parts);

/* Whether CUSE can be used here; when not, why (for the user). Tries modprobe cuse once. */
bool cuseAvailable(std::string &why);

/* The ioctls the FUSE fallback cannot carry, for the warning it prints. */
extern const char *const kFuseFallbackLimits;

} // namespace devemu
