// SPDX-License-Identifier: MIT
// Plugin loading: dlopen a model plugin and call its registration entry point.
#include "devemu/plugin.h"

#include <fmt/core.h>

#include <dlfcn.h>

namespace devemu {

int loadPlugin(const std::string &path, ModelRegistry &registry, std::string &error)
{
	/* Kept loaded for the life of the process: its models' code lives there. */
	void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		error = fmt::format("plugin {}: {}", path, dlerror());
		return -ENOENT;
	}
	using InitFn = int (*)(unsigned, ModelRegistry *);
	auto init = reinterpret_cast<InitFn>(dlsym(handle, "devemu_plugin_init"));
	if (!init) {
		error = fmt::format("plugin {}: no devemu_plugin_init (did it use DEVEMU_PLUGIN?)", path);
		dlclose(handle);
		return -ENOEXEC;
	}
	int ret = init(DEVEMU_PLUGIN_ABI, &registry);
	if (ret < 0) {
		error = fmt::format("plugin {}: built for another model API (this daemon has ABI {})", path,
				    DEVEMU_PLUGIN_ABI);
		dlclose(handle);
		return ret;
	}
	return 0;
}

} // namespace devemu
