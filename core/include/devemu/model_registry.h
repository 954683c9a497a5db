// SPDX-License-Identifier: MIT
// Model options (key=value with typed, checked getters) and the registry of model factories.
#pragma once

#include "devemu/model.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace devemu {

/*
 * The key=value options of one device's model. Getters mark keys as known and
 * record the first bad value; after the factory ran, error() names what was
 * wrong (an unknown key is an error, never ignored).
 */
class ModelOptions
{
public:
	using Pairs = std::vector<std::pair<std::string, std::string>>;
	ModelOptions(std::string device, std::string model, Pairs pairs);

	/* A byte count or number: decimal, 0x hex, optional k/K/m/M/g/G (x1024) suffix. */
	uint64_t number(std::string_view key, uint64_t fallback, uint64_t min, uint64_t max);
	std::optional<uint64_t> optionalNumber(std::string_view key, uint64_t min, uint64_t max);
	/* A decimal number with an optional fraction (a temperature, a voltage). */
	double real(std::string_view key, double fallback, double min, double max);
	std::string string(std::string_view key, std::string_view fallback);
	std::string choice(std::string_view key, std::string_view fallback,
			   std::initializer_list<std::string_view> allowed);
	bool flag(std::string_view key, bool fallback);
	/* Lets a model report its own validation problem. */
	void fail(std::string_view key, std::string message);

	/* Empty when all is well; else one message naming device, model, key and what was expected. */
	std::string error() const;
	/* The key error() is about (for locating it in a config file). */
	std::string errorKey() const;

private:
	const std::string *find(std::string_view key);
	void bad(std::string_view key, std::string_view value, std::string_view expected);

	std::string device_;
	std::string model_;
	Pairs pairs_;
	std::vector<std::string> known_;
	std::string error_;
	std::string errorKey_;
};

struct ModelInfo {
	/*
	 * Builds a model from its options: parses and checks them (problems go to
	 * ModelOptions) and acquires nothing; Model::start() does that.
	 */
	using Factory = std::function<std::unique_ptr<Model>(ModelOptions &, DeviceContext &)>;
	std::string name;
	std::string summary;
	std::string optionsHelp; /* one line per option: "key=VALUE  what (default)" */
	Factory factory;
	std::string injectHelp = {}; /* one line per devemuctl inject verb */
};

class ModelRegistry
{
public:
	/* The registry with every built-in model. */
	static ModelRegistry &builtin();

	void add(ModelInfo info);
	const ModelInfo *find(std::string_view name) const;
	std::vector<const ModelInfo *> list() const;

private:
	std::map<std::string, ModelInfo, std::less<>> models_;
};

/* Registers the models shipped in core/models. */
void registerBuiltinModels(ModelRegistry &registry);

} // namespace devemu
