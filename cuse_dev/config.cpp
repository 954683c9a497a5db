// SPDX-License-Identifier: MIT
// devemud's command line (Boost.Program_options) and device-spec parsing.
#include "config.h"
#include "runtime_dirs.h"

#include "devemu/plugin.h"

#include <boost/program_options.hpp>
#include <fmt/core.h>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <sstream>

#ifndef DEVEMU_VERSION
#define DEVEMU_VERSION "unknown"
#endif

namespace devemu {

namespace po = boost::program_options;

bool parseTransports(std::string_view text, TransportKinds &transports, std::string &error)
{
	TransportKinds out;
	size_t userSpace = 0;
	while (true) {
		size_t comma = text.find(',');
		std::string_view item = text.substr(0, comma);
		auto known = std::find_if(std::begin(kTransportNames), std::end(kTransportNames),
					  [&](const auto &entry) { return entry.second == item; });
		if (known == std::end(kTransportNames)) {
			error = fmt::format("'{}': expected auto, cuse, fuse, kshim, or a list such as cuse,kshim",
					    item);
			return false;
		}
		TransportKind t = known->first;
		if (std::find(out.begin(), out.end(), t) != out.end()) {
			error = fmt::format("'{}' is listed twice", item);
			return false;
		}
		if (t != TransportKind::Kshim)
			userSpace++;
		out.push_back(t);
		if (comma == std::string_view::npos)
			break;
		text.remove_prefix(comma + 1);
	}
	if (userSpace > 1) {
		error = "at most one of auto, cuse and fuse (they would both be /dev/NAME); add kshim for a second "
			"node";
		return false;
	}
	transports = std::move(out);
	return true;
}

bool parseMode(std::string_view text, mode_t &mode)
{
	unsigned v = 0;
	auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 8);
	if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v > 07777)
		return false;
	mode = static_cast<mode_t>(v);
	return true;
}

namespace {
bool parseId(std::string_view text, unsigned &id)
{
	auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
	return !text.empty() && ec == std::errc() && p == text.data() + text.size();
}
} // namespace

bool resolveUser(std::string_view text, uid_t &uid, std::string &error)
{
	unsigned id;
	if (parseId(text, id)) {
		uid = id;
		return true;
	}
	std::string name(text);
	if (passwd *pw = getpwnam(name.c_str())) {
		uid = pw->pw_uid;
		return true;
	}
	error = fmt::format("unknown user '{}'", text);
	return false;
}

bool resolveGroup(std::string_view text, gid_t &gid, std::string &error)
{
	unsigned id;
	if (parseId(text, id)) {
		gid = id;
		return true;
	}
	std::string name(text);
	if (group *gr = getgrnam(name.c_str())) {
		gid = gr->gr_gid;
		return true;
	}
	error = fmt::format("unknown group '{}'", text);
	return false;
}

bool parseDeviceSpec(std::string_view text, DeviceSpec &spec, std::string &error)
{
	spec = {};
	size_t eq = text.find('=');
	if (eq == std::string_view::npos) {
		error = fmt::format("device '{}': expected NAME=MODEL[,key=value...]", text);
		return false;
	}
	spec.name = std::string(text.substr(0, eq));
	if (spec.name.empty() || spec.name.size() >= DEVEMU_DEVICE_NAME_MAX || spec.name == "." || spec.name == ".." ||
	    spec.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
		    std::string::npos) {
		error = fmt::format("device name '{}': use 1 to {} letters, digits, '_', '.' or '-'", spec.name,
				    DEVEMU_DEVICE_NAME_MAX - 1);
		return false;
	}
	std::string_view rest = text.substr(eq + 1);
	size_t comma = rest.find(',');
	spec.model = std::string(rest.substr(0, comma));
	if (spec.model.empty()) {
		error = fmt::format("device '{}': no model given (NAME=MODEL)", spec.name);
		return false;
	}
	while (comma != std::string_view::npos) {
		rest = rest.substr(comma + 1);
		comma = rest.find(',');
		std::string_view item = rest.substr(0, comma);
		size_t e = item.find('=');
		if (e == std::string_view::npos || e == 0) {
			error = fmt::format("device '{}': option '{}': expected key=value", spec.name, item);
			return false;
		}
		std::string key(item.substr(0, e));
		std::string value(item.substr(e + 1));
		if (key == "mode") {
			mode_t m;
			if (!parseMode(value, m)) {
				error = fmt::format(
					"device '{}': option 'mode={}': expected an octal mode such as 0660", spec.name,
					value);
				return false;
			}
			spec.mode = m;
		} else if (key == "owner") {
			uid_t uid;
			if (!resolveUser(value, uid, error)) {
				error = fmt::format("device '{}': option 'owner': {}", spec.name, error);
				return false;
			}
			spec.uid = uid;
		} else if (key == "group") {
			gid_t gid;
			if (!resolveGroup(value, gid, error)) {
				error = fmt::format("device '{}': option 'group': {}", spec.name, error);
				return false;
			}
			spec.gid = gid;
		} else if (key == "fifo") {
			if (value != "on" && value != "off") {
				error = fmt::format("device '{}': option 'fifo={}': expected on or off", spec.name,
						    value);
				return false;
			}
			spec.fifo = value == "on";
		} else if (key == "transport") {
			/* Inside a device spec a comma separates options: combine transports with '+'. */
			std::string list = value;
			std::replace(list.begin(), list.end(), '+', ',');
			TransportKinds t;
			std::string why;
			if (!parseTransports(list, t, why)) {
				error = fmt::format("device '{}': option 'transport={}': {}", spec.name, value, why);
				return false;
			}
			spec.transports = t;
		} else {
			spec.options.emplace_back(std::move(key), std::move(value));
		}
	}
	return true;
}

ParseResult parseCommandLine(int argc, char **argv, DaemonConfig &config)
{
	std::vector<std::string> devices, plugins;
	std::string name, model, transport = "auto", mode = "0660", owner, group, logLevel = "info";
	std::string configPath, controlPath, controlGroup, runUser;
	unsigned busyPollUs = 0;
	po::options_description desc("Options");
	desc.add_options()("help,h", "show this help and exit")("version,V", "show the version and exit")(
		"device,d", po::value(&devices)->composing(),
		"serve NAME=MODEL[,key=value...] as /dev/NAME (repeatable); node keys mode=, owner=, group=, "
		"fifo=on|off, transport= apply to this device only, other keys are model options")(
		"name", po::value(&name), "shorthand: the name of a single device (with --model)")(
		"model", po::value(&model), "shorthand: the model of a single device (with --name)")(
		"transport,t", po::value(&transport),
		"auto|cuse|fuse|kshim, or cuse,kshim to serve one device over two transports (the kshim node is "
		"then NAMEk); default auto: CUSE when the kernel has it, else the FUSE fallback")(
		"mode", po::value(&mode), "node permission bits, octal (default 0660)")(
		"owner", po::value(&owner), "node owner, name or uid (default root, or the user running devemud)")(
		"group", po::value(&group), "node group, name or gid (default root, or the user's group)")(
		"foreground,f", "stay in the foreground (default: detach once every node exists)")(
		"log-level", po::value(&logLevel), "debug|info|warning|error (default info)")(
		"config,c", po::value(&configPath),
		"devices and settings from a TOML file (default /etc/devemu/devemud.toml, for a user "
		"$XDG_CONFIG_HOME/devemu/devemud.toml, when it exists and no --device is given); SIGHUP re-reads it")(
		"control", po::value(&controlPath),
		"control socket for devemuctl (default /run/devemu/control, for a user "
		"$XDG_RUNTIME_DIR/devemu/control; none: off)")(
		"control-group", po::value(&controlGroup),
		"group allowed to use the control socket (default: root only)")(
		"user,u", po::value(&runUser), "drop to this user (and its group) once every node exists")(
		"plugin", po::value(&plugins)->composing(), "load models from a plugin shared object (repeatable)")(
		"busy-poll", po::value(&busyPollUs),
		"kshim devices: after serving a doorbell, keep polling the ring for USEC microseconds before sleeping")(
		"list-models", "list the built-in models and their options, then exit");

	po::variables_map vm;
	try {
		po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
		po::notify(vm);
	} catch (const po::error &e) {
		return { 2, fmt::format("devemud: {}\nTry 'devemud --help'.", e.what()) };
	}
	if (vm.count("help")) {
		std::ostringstream out;
		out << "Usage: devemud [--device NAME=MODEL[,key=value...]]... [--transport auto|cuse|fuse|kshim]\n"
		       "               [--mode 0660] [--owner USER] [--group GROUP] [--foreground]\n"
		       "               [--log-level LEVEL] [--help] [--version]\n"
		       "Serves emulated character devices as /dev nodes (CUSE, the FUSE fallback or the kernel shim).\n"
		       "With no device it serves devemu0=loopback.\n\n"
		    << desc << "\nExamples:\n"
		    << "  devemud -f --device devemu0=loopback,capacity=1M\n"
		    << "  devemud --device zero0=zero --device rng0=rng,seed=42,mode=0666\n";
		return { 0, out.str() };
	}
	if (vm.count("version"))
		return { 0, "devemud " DEVEMU_VERSION };
	std::string pluginError;
	for (const auto &p : plugins) {
		if (loadPlugin(p, ModelRegistry::builtin(), pluginError) < 0)
			return { 2, "devemud: " + pluginError };
		config.plugins.push_back(p);
	}
	if (vm.count("list-models")) {
		std::string out;
		for (const ModelInfo *m : ModelRegistry::builtin().list()) {
			out += fmt::format("{:<10} {}\n", m->name, m->summary);
			std::istringstream lines(m->optionsHelp);
			for (std::string line; std::getline(lines, line);)
				out += fmt::format("           {}\n", line);
			std::istringstream verbs(m->injectHelp);
			for (std::string line; std::getline(verbs, line);)
				out += fmt::format("           inject {}\n", line);
		}
		return { 0, out };
	}

	std::string error;
	/* An ordinary user's daemon defaults to the user's own directories, never the system's. */
	config.controlPath = defaultControlPath();
	/* Nodes are their runner's unless said otherwise: root's, or the ordinary user's own. */
	config.uid = geteuid();
	config.gid = getegid();
	/* The config file first; options given on the command line override its [daemon] settings. */
	if (configPath.empty() && !vm.count("device") && !vm.count("name") &&
	    access(defaultConfigPath().c_str(), F_OK) == 0)
		configPath = defaultConfigPath();
	if (!configPath.empty()) {
		config.configPath = configPath;
		if (!loadConfigFile(configPath, config, error))
			return { 2, "devemud: " + error };
	}
	if (vm.count("transport") && !parseTransports(transport, config.transports, error))
		return { 2, fmt::format("devemud: --transport {}", error) };
	if (vm.count("mode") && !parseMode(mode, config.mode))
		return { 2, fmt::format("devemud: --mode '{}': expected an octal mode such as 0660", mode) };
	if (!owner.empty() && !resolveUser(owner, config.uid, error))
		return { 2, fmt::format("devemud: --owner: {}", error) };
	if (!group.empty() && !resolveGroup(group, config.gid, error))
		return { 2, fmt::format("devemud: --group: {}", error) };
	if (vm.count("log-level") && !parseLogLevel(logLevel, config.logLevel))
		return { 2,
			 fmt::format("devemud: --log-level '{}': expected debug, info, warning or error", logLevel) };
	if (!controlPath.empty())
		config.controlPath = controlPath;
	if (!controlGroup.empty()) {
		gid_t gid;
		if (!resolveGroup(controlGroup, gid, error))
			return { 2, fmt::format("devemud: --control-group: {}", error) };
		config.controlGid = gid;
	}
	if (!runUser.empty()) {
		uid_t uid;
		if (!resolveUser(runUser, uid, error))
			return { 2, fmt::format("devemud: --user: {}", error) };
		config.runUid = uid;
		passwd *pw = getpwuid(uid);
		config.runGid = pw ? pw->pw_gid : uid;
	}
	config.foreground = vm.count("foreground") > 0;
	if (vm.count("busy-poll")) {
		if (busyPollUs > 1000000)
			return { 2, "devemud: --busy-poll: at most 1000000 microseconds" };
		config.busyPoll = std::chrono::microseconds(busyPollUs);
	}

	if (!name.empty() || !model.empty()) {
		if (name.empty() || model.empty())
			return { 2, "devemud: --name and --model go together" };
		devices.push_back(name + "=" + model);
	}
	if (devices.empty() && config.devices.empty())
		devices.push_back("devemu0=loopback");
	for (const auto &text : devices) {
		DeviceSpec spec;
		if (!parseDeviceSpec(text, spec, error))
			return { 2, "devemud: " + error };
		for (const auto &other : config.devices)
			if (other.name == spec.name)
				return { 2, fmt::format("devemud: device '{}' is given twice", spec.name) };
		if (!ModelRegistry::builtin().find(spec.model))
			return { 2, fmt::format("devemud: device '{}': unknown model '{}' (models: {})", spec.name,
						spec.model, knownModels()) };
		config.devices.push_back(std::move(spec));
	}
	return {};
}

} // namespace devemu
