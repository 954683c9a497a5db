// SPDX-License-Identifier: MIT
// Model option parsing and the model registry.
#include "devemu/model_registry.h"

#include "devemu/number_text.h"

#include <fmt/core.h>

#include <algorithm>

namespace devemu {

ModelOptions::ModelOptions(std::string device, std::string model, Pairs pairs)
	: device_(std::move(device)), model_(std::move(model)), pairs_(std::move(pairs))
{}

const std::string *ModelOptions::find(std::string_view key)
{
	known_.emplace_back(key);
	const std::string *found = nullptr;
	for (const auto &[k, v] : pairs_)
		if (k == key)
			found = &v; /* the last one wins */
	return found;
}

void ModelOptions::bad(std::string_view key, std::string_view value, std::string_view expected)
{
	if (error_.empty()) {
		error_ = fmt::format("device '{}': model '{}': option '{}={}': expected {}", device_, model_, key,
				     value, expected);
		errorKey_ = key;
	}
}

void ModelOptions::fail(std::string_view key, std::string message)
{
	if (error_.empty()) {
		error_ = fmt::format("device '{}': model '{}': option '{}': {}", device_, model_, key, message);
		errorKey_ = key;
	}
}

std::optional<uint64_t> ModelOptions::optionalNumber(std::string_view key, uint64_t min, uint64_t max)
{
	const std::string *v = find(key);
	if (!v)
		return std::nullopt;
	auto n = parseSize(*v);
	if (!n || *n < min || *n > max) {
		bad(key, *v, fmt::format("a number from {} to {}", min, max));
		return std::nullopt;
	}
	return n;
}

double ModelOptions::real(std::string_view key, double fallback, double min, double max)
{
	const std::string *v = find(key);
	if (!v)
		return fallback;
	auto n = parseReal(*v, min, max);
	if (!n) {
		bad(key, *v, fmt::format("a number from {} to {}", min, max));
		return fallback;
	}
	return *n;
}

uint64_t ModelOptions::number(std::string_view key, uint64_t fallback, uint64_t min, uint64_t max)
{
	return optionalNumber(key, min, max).value_or(fallback);
}

std::string ModelOptions::string(std::string_view key, std::string_view fallback)
{
	const std::string *v = find(key);
	return v ? *v : std::string(fallback);
}

std::string ModelOptions::choice(std::string_view key, std::string_view fallback,
				 std::initializer_list<std::string_view> allowed)
{
	const std::string *v = find(key);
	if (!v)
		return std::string(fallback);
	if (std::find(allowed.begin(), allowed.end(), *v) == allowed.end()) {
		std::string list;
		for (auto a : allowed)
			list += (list.empty() ? "" : "|") + std::string(a);
		bad(key, *v, "one of " + list);
		return std::string(fallback);
	}
	return *v;
}

bool ModelOptions::flag(std::string_view key, bool fallback)
{
	const std::string *v = find(key);
	if (!v)
		return fallback;
	if (*v == "1" || *v == "true" || *v == "yes" || *v == "on")
		return true;
	if (*v == "0" || *v == "false" || *v == "no" || *v == "off")
		return false;
	bad(key, *v, "true or false");
	return fallback;
}

std::string ModelOptions::error() const
{
	if (!error_.empty())
		return error_;
	for (const auto &[k, v] : pairs_) {
		if (std::find(known_.begin(), known_.end(), k) != known_.end())
			continue;
		std::string list;
		for (const auto &known : known_)
			if (list.find(known) == std::string::npos)
				list += (list.empty() ? "" : ", ") + known;
		return fmt::format("device '{}': model '{}' has no option '{}' (its options: {})", device_, model_, k,
				   list.empty() ? "none" : list);
	}
	return {};
}

std::string ModelOptions::errorKey() const
{
	if (!errorKey_.empty())
		return errorKey_;
	for (const auto &[k, v] : pairs_)
		if (std::find(known_.begin(), known_.end(), k) == known_.end())
			return k;
	return {};
}

ModelRegistry &ModelRegistry::builtin()
{
	static ModelRegistry registry = [] {
		ModelRegistry r;
		registerBuiltinModels(r);
		return r;
	}();
	return registry;
}

void ModelRegistry::add(ModelInfo info)
{
	std::string name = info.name;
	models_.insert_or_assign(std::move(name), std::move(info));
}

const ModelInfo *ModelRegistry::find(std::string_view name) const
{
	auto it = models_.find(name);
	return it == models_.end() ? nullptr : &it->second;
}

std::vector<const ModelInfo *> ModelRegistry::list() const
{
	std::vector<const ModelInfo *> out;
	for (const auto &[name, info] : models_)
		out.push_back(&info);
	return out;
}

} // namespace devemu
