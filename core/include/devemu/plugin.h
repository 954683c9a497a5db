// SPDX-License-Identifier: MIT
// Models outside the tree: a plugin is a shared object that registers models with the daemon's registry.
#pragma once

#include "devemu/model_registry.h"

#include <cerrno>
#include <string>

/* Bumped whenever the model API (model.h, model_registry.h) changes incompatibly. */
#define DEVEMU_PLUGIN_ABI 1

/*
 * In a plugin, one line registers its models:
 *
 *   static void registerModels(devemu::ModelRegistry &registry) { registry.add({...}); }
 *   DEVEMU_PLUGIN(registerModels)
 */
#define DEVEMU_PLUGIN(registerFn)                                                          \
	extern "C" int devemu_plugin_init(unsigned abi, ::devemu::ModelRegistry *registry) \
	{                                                                                  \
		if (abi != DEVEMU_PLUGIN_ABI)                                              \
			return -EPROTO;                                                    \
		registerFn(*registry);                                                     \
		return 0;                                                                  \
	}

namespace devemu {

/* Loads a plugin and lets it register its models; on failure returns -errno with a message. */
int loadPlugin(const std::string &path, ModelRegistry &registry, std::string &error);

} // namespace devemu
