// SPDX-License-Identifier: MIT
// The devemud config file: TOML (toml++), with errors that name the file, the line and the key.
#include "config.h"

#include "devemu/device_core.h"
#include "devemu/plugin.h"

#include <fmt/core.h>
#include <toml++/toml.h>

#include <pwd.h>

#include <algorithm>
#include <functional>

namespace devemu {

namespace {

class FileReader
{
public:
	FileReader(const std::string &path, std::string &error, PluginLoading plugins)
		: path_(path), error_(error), plugins_(plugins)
	{}

	bool fail(const toml::node &node, std::string_view key, std::string_view message)
	{
		if (error_.empty())
			error_ = fmt::format("{}:{}: key '{}': {}", path_, node.source().begin.line, key, message);
		return false;
	}
	bool failAt(const toml::source_region &where, std::string_view key, std::string_view message)
	{
		if (error_.empty())
			error_ = fmt::format("{}:{}: key '{}': {}", path_, where.begin.line, key, message);
		return false;
	}

	bool string(const toml::node &node, std::string_view key, std::string &out)
	{
		if (!node.is_string())
			return fail(node, key, "expected a string");
		out = **node.as_string();
		return true;
	}

	/* A scalar as the text a command line would give: "1M", 65536, true. */
	bool scalarText(const toml::node &node, std::string_view key, std::string &out)
	{
		if (node.is_string())
			out = **node.as_string();
		else if (node.is_integer())
			out = std::to_string(**node.as_integer());
		else if (node.is_boolean())
			out = **node.as_boolean() ? "true" : "false";
		else if (node.is_floating_point())
			out = fmt::format("{}", **node.as_floating_point());
		else
			return fail(node, key, "expected a string, a number or a boolean");
		return true;
	}

	bool transports(const toml::node &node, std::string_view key, TransportKinds &out)
	{
		std::string list;
		if (node.is_string()) {
			list = **node.as_string();
		} else if (auto *array = node.as_array()) {
			for (const auto &item : *array) {
				if (!item.is_string())
					return fail(item, key, "expected transport names such as \"cuse\"");
				list += (list.empty() ? "" : ",") + **item.as_string();
			}
		} else {
			return fail(node, key, "expected \"auto\", \"cuse\", \"fuse\", \"kshim\" or a list of them");
		}
		std::string why;
		if (!parseTransports(list, out, why))
			return fail(node, key, why);
		return true;
	}

	bool mode(const toml::node &node, std::string_view key, mode_t &out)
	{
		std::string text;
		if (node.is_integer())
			text = fmt::format("{:o}", **node.as_integer()); /* 0o660 in TOML is already octal */
		else if (!string(node, key, text))
			return false;
		if (!parseMode(text, out))
			return fail(node, key, "expected an octal mode such as \"0660\"");
		return true;
	}

	template<typename Fn>
	bool user(const toml::node &node, std::string_view key, Fn resolve)
	{
		std::string text, why;
		if (!scalarText(node, key, text))
			return false;
		if (!resolve(text, why))
			return fail(node, key, why);
		return true;
	}

	bool unknown(const toml::key &k, std::string_view where, std::string_view known)
	{
		return unknownIn(k, "", where, known);
	}
	bool unknownIn(const toml::key &k, std::string_view prefix, std::string_view where, std::string_view known)
	{
		return failAt(k.source(), fmt::format("{}{}", prefix, k.str()),
			      fmt::format("unknown key in {} (known: {})", where, known));
	}

	bool daemon(const toml::table &table, DaemonConfig &config)
	{
		for (auto &&[k, v] : table) {
			std::string_view key = k.str();
			std::string text;
			if (key == "transport") {
				if (!transports(v, "daemon.transport", config.transports))
					return false;
			} else if (key == "mode") {
				if (!mode(v, "daemon.mode", config.mode))
					return false;
			} else if (key == "owner") {
				if (!user(v, "daemon.owner", [&](const std::string &t, std::string &why) {
					    return resolveUser(t, config.uid, why);
				    }))
					return false;
			} else if (key == "group") {
				if (!user(v, "daemon.group", [&](const std::string &t, std::string &why) {
					    return resolveGroup(t, config.gid, why);
				    }))
					return false;
			} else if (key == "user") {
				uid_t uid;
				if (!user(v, "daemon.user", [&](const std::string &t, std::string &why) {
					    return resolveUser(t, uid, why);
				    }))
					return false;
				config.runUid = uid;
				if (passwd *pw = getpwuid(uid); pw && !config.runGid)
					config.runGid = pw->pw_gid;
			} else if (key == "control") {
				if (!string(v, "daemon.control", config.controlPath))
					return false;
			} else if (key == "control_group") {
				gid_t gid;
				if (!user(v, "daemon.control_group", [&](const std::string &t, std::string &why) {
					    return resolveGroup(t, gid, why);
				    }))
					return false;
				config.controlGid = gid;
			} else if (key == "log_level") {
				if (!string(v, "daemon.log_level", text))
					return false;
				if (!parseLogLevel(text, config.logLevel))
					return fail(v, "daemon.log_level", "expected debug, info, warning or error");
			} else if (key == "plugins") {
				auto *array = v.as_array();
				if (!array)
					return fail(v, "daemon.plugins", "expected a list of paths");
				for (const auto &item : *array) {
					if (!string(item, "daemon.plugins", text))
						return false;
					if (std::find(config.plugins.begin(), config.plugins.end(), text) !=
					    config.plugins.end())
						continue;
					std::string why;
					if (plugins_ == PluginLoading::Load &&
					    loadPlugin(text, ModelRegistry::builtin(), why) < 0)
						return fail(item, "daemon.plugins", why);
					config.plugins.push_back(text);
				}
			} else {
				return unknownIn(k, "daemon.", "[daemon]",
						 "transport, mode, owner, group, user, control, control_group, "
						 "log_level, plugins");
			}
		}
		return true;
	}

	bool device(const toml::table &table, size_t index, DeviceSpec &spec)
	{
		spec = {};
		spec.fromFile = true;
		std::string where = fmt::format("device[{}]", index);
		/* Keys come in sorted order (group, mode, model before name): label them by name from the start. */
		if (const toml::node *n = table.get("name"); n && n->is_string() && !n->as_string()->get().empty())
			where = fmt::format("device '{}'", n->as_string()->get());
		const toml::table *options = nullptr;
		for (auto &&[k, v] : table) {
			std::string_view key = k.str();
			std::string full = fmt::format("{}.{}", where, key);
			if (key == "name") {
				if (!string(v, full, spec.name))
					return false;
			} else if (key == "model") {
				if (!string(v, full, spec.model))
					return false;
			} else if (key == "transport") {
				TransportKinds t;
				if (!transports(v, full, t))
					return false;
				spec.transports = t;
			} else if (key == "mode") {
				mode_t m;
				if (!mode(v, full, m))
					return false;
				spec.mode = m;
			} else if (key == "owner") {
				uid_t uid;
				if (!user(v, full, [&](const std::string &t, std::string &why) {
					    return resolveUser(t, uid, why);
				    }))
					return false;
				spec.uid = uid;
			} else if (key == "group") {
				gid_t gid;
				if (!user(v, full, [&](const std::string &t, std::string &why) {
					    return resolveGroup(t, gid, why);
				    }))
					return false;
				spec.gid = gid;
			} else if (key == "options") {
				options = v.as_table();
				if (!options)
					return fail(v, full, "expected a table of model options");
			} else {
				return unknownIn(k, where + ".", "[[device]]",
						 "name, model, transport, mode, owner, group, options");
			}
		}
		if (spec.name.empty())
			return failAt(table.source(), fmt::format("device[{}].name", index),
				      "missing: every [[device]] needs a name");
		std::string nameError;
		DeviceSpec check;
		if (!parseDeviceSpec(spec.name + "=x", check, nameError))
			return fail(*table.get("name"), fmt::format("device[{}].name", index), nameError);
		if (spec.model.empty())
			return failAt(table.source(), fmt::format("device '{}'.model", spec.name),
				      "missing: every [[device]] needs a model");
		if (!ModelRegistry::builtin().find(spec.model))
			return fail(*table.get("model"), fmt::format("device '{}'.model", spec.name),
				    fmt::format("unknown model '{}' (models: {})", spec.model, knownModels()));
		if (options) {
			for (auto &&[k, v] : *options) {
				std::string text;
				if (!scalarText(v, fmt::format("device '{}'.options.{}", spec.name, k.str()), text))
					return false;
				spec.options.emplace_back(std::string(k.str()), text);
			}
		}
		if (OptionCheck check = checkModelOptions(spec); !check.error.empty()) {
			const toml::node *at = options && options->get(check.key) ? options->get(check.key) : &table;
			return fail(*at, fmt::format("device '{}'.options.{}", spec.name, check.key), check.error);
		}
		return true;
	}

private:
	const std::string &path_;
	std::string &error_;
	PluginLoading plugins_;
};

} // namespace

std::string knownModels()
{
	std::string known;
	for (const ModelInfo *m : ModelRegistry::builtin().list())
		known += (known.empty() ? "" : ", ") + m->name;
	return known;
}

OptionCheck checkModelOptions(const DeviceSpec &spec)
{
	const ModelInfo *info = ModelRegistry::builtin().find(spec.model);
	if (!info)
		return { fmt::format("device '{}': unknown model '{}'", spec.name, spec.model), {} };
	/* Build the model once on a throwaway core: the factory is what knows its options. */
	asio::io_context io;
	DeviceCore core(Strand(io.get_executor()), spec.name);
	ModelOptions options(spec.name, spec.model, spec.options);
	try {
		auto model = info->factory(options, core);
		if (!model && options.error().empty())
			return { fmt::format("device '{}': model '{}' failed to start", spec.name, spec.model), {} };
	} catch (const std::exception &e) {
		return { fmt::format("device '{}': model '{}': {}", spec.name, spec.model, e.what()), {} };
	}
	return { options.error(), options.errorKey() };
}

namespace {

void describeParseError(const toml::parse_error &e, const std::string &path, std::string &error)
{
	if (e.source().begin.line == 0)
		error = fmt::format("{}: {}", path, e.description());
	else
		error = fmt::format("{}:{}:{}: {}", path, e.source().begin.line, e.source().begin.column,
				    e.description());
}

bool readConfig(toml::table &root, const std::string &path, DaemonConfig &config, std::string &error,
		PluginLoading plugins)
{
	FileReader reader(path, error, plugins);
	/* [daemon] first, wherever it is in the file: its plugins provide models the devices use. */
	if (toml::node *daemon = root.get("daemon")) {
		auto *table = daemon->as_table();
		if (!table)
			return reader.fail(*daemon, "daemon", "expected a [daemon] table");
		if (!reader.daemon(*table, config))
			return false;
	}
	std::vector<DeviceSpec> devices;
	for (auto &&[k, v] : root) {
		if (k.str() == "daemon") {
			continue;
		} else if (k.str() == "device") {
			auto *array = v.as_array();
			if (!array || !array->is_array_of_tables())
				return reader.fail(v, "device", "expected [[device]] tables");
			size_t index = 0;
			for (auto &item : *array) {
				DeviceSpec spec;
				if (!reader.device(*item.as_table(), index++, spec))
					return false;
				for (const auto &other : devices)
					if (other.name == spec.name)
						return reader.fail(item, fmt::format("device '{}'.name", spec.name),
								   "the name is used twice");
				devices.push_back(std::move(spec));
			}
		} else {
			return reader.unknown(k, "the top level", "[daemon], [[device]]");
		}
	}
	std::erase_if(config.devices, [](const DeviceSpec &d) { return d.fromFile; });
	for (auto &d : devices) {
		for (const auto &other : config.devices)
			if (other.name == d.name) {
				error = fmt::format("{}: device '{}' is also given on the command line", path, d.name);
				return false;
			}
		config.devices.push_back(std::move(d));
	}
	return true;
}

} // namespace

bool loadConfigFile(const std::string &path, DaemonConfig &config, std::string &error)
{
	error.clear();
	toml::table root;
	try {
		root = toml::parse_file(path);
	} catch (const toml::parse_error &e) {
		describeParseError(e, path, error);
		return false;
	}
	return readConfig(root, path, config, error, PluginLoading::Load);
}

bool loadConfigText(std::string_view text, const std::string &path, DaemonConfig &config, std::string &error,
		    PluginLoading plugins)
{
	error.clear();
	toml::table root;
	try {
		root = toml::parse(text, path);
	} catch (const toml::parse_error &e) {
		describeParseError(e, path, error);
		return false;
	}
	return readConfig(root, path, config, error, plugins);
}

} // namespace devemu
