// SPDX-License-Identifier: MIT
// The list of models built into the core.
#include "devemu/model_registry.h"

namespace devemu {

void registerLoopbackModel(ModelRegistry &registry);
void registerZeroModel(ModelRegistry &registry);
void registerRngModel(ModelRegistry &registry);
void registerRtcModel(ModelRegistry &registry);
void registerWatchdogModel(ModelRegistry &registry);
void registerSerialModel(ModelRegistry &registry);
void registerI2cModel(ModelRegistry &registry);
void registerEvdevModel(ModelRegistry &registry);
void registerPassthroughModel(ModelRegistry &registry);
void registerReplayModel(ModelRegistry &registry);
void registerPythonModel(ModelRegistry &registry);

void registerBuiltinModels(ModelRegistry &registry)
{
	registerLoopbackModel(registry);
	registerZeroModel(registry);
	registerRngModel(registry);
	registerRtcModel(registry);
	registerWatchdogModel(registry);
	registerSerialModel(registry);
	registerI2cModel(registry);
	registerEvdevModel(registry);
	registerPassthroughModel(registry);
	registerReplayModel(registry);
	registerPythonModel(registry);
}

} // namespace devemu
