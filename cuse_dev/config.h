// SPDX-License-Identifier: MIT
// DaemonConfig: what devemud serves and how, from the command line and the config file.
#pragma once

#include "control/protocol.h"
#include "transports/transport_kind.h"

#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/uapi/devemu.h"

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace devemu {

using TransportKinds = std::vector<TransportKind>;

struct DeviceSpec {
	std::string name;
	std::string model;
	ModelOptions::Pairs options; /* model options; node keys (mode, owner, group, transport) removed */
	std::optional<TransportKinds> transports;
	std::optional<mode_t> mode;
	std::optional<uid_t> uid;
	std::optional<gid_t> gid;
	/* fifo=off: the kernel shim serves this device's reads and writes by requests; fifo=on or unset: from
	 * stream FIFOs for the models that stream, loops (loopback) included. */
	std::optional<bool> fifo;
	bool fromFile = false; /* declared in the config file: SIGHUP may change or remove it */

	bool operator==(const DeviceSpec &) const = default;
};

struct DaemonConfig {
	std::vector<DeviceSpec> devices;
	TransportKinds transports{ TransportKind::Auto };
	mode_t mode = 0660;
	uid_t uid = 0;
	gid_t gid = 0;
	bool foreground = false;
	LogLevel logLevel = LogLevel::Info;
	std::string configPath; /* empty: no config file */
	std::string controlPath = kDefaultControlPath; /* "none": no control socket; a user's: runtime_dirs.h */
	long controlGid = -1; /* >= 0: this group may use the control socket */
	std::optional<uid_t> runUid; /* drop to this user once the nodes exist */
	std::optional<gid_t> runGid;
	std::vector<std::string> plugins;
	std::chrono::microseconds busyPoll{ 0 }; /* kshim devices: spin before sleeping */
};

/*
 * Reads a TOML config file into config (the [daemon] table and [[device]]
 * entries, which replace config.devices' file entries). Every error names the
 * file, the line and the key, and what was expected. Returns false on error.
 */
bool loadConfigFile(const std::string &path, DaemonConfig &config, std::string &error);

/* Whether a config's plugins are loaded as they are read, or only listed (checking a text). */
enum class PluginLoading { Load, ListOnly };

/* The same from text already read; path names it in errors. */
bool loadConfigText(std::string_view text, const std::string &path, DaemonConfig &config, std::string &error,
		    PluginLoading plugins = PluginLoading::Load);
/*
 * Checks a device's model options by building the model once without starting
 * it (a factory acquires nothing): the error (empty when fine) and its key.
 */
struct OptionCheck {
	std::string error;
	std::string key;
};
OptionCheck checkModelOptions(const DeviceSpec &spec);
/* The built-in models' names, comma-separated (for error messages). */
std::string knownModels();

/* Outcome of parsing: run, or exit at once with a status (help/version/errors). */
struct ParseResult {
	std::optional<int> exitStatus;
	std::string message; /* printed to stdout on status 0, stderr otherwise */
};

ParseResult parseCommandLine(int argc, char **argv, DaemonConfig &config);

/* Parses "NAME=MODEL[,key=value...]"; on error returns false with a message. */
bool parseDeviceSpec(std::string_view text, DeviceSpec &spec, std::string &error);
/* "auto", "cuse", "fuse", "kshim", or a comma list of a user-space one and kshim ("cuse,kshim"). */
bool parseTransports(std::string_view text, TransportKinds &transports, std::string &error);
bool parseMode(std::string_view text, mode_t &mode);
bool resolveUser(std::string_view text, uid_t &uid, std::string &error);
bool resolveGroup(std::string_view text, gid_t &gid, std::string &error);

} // namespace devemu
