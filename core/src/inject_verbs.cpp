// SPDX-License-Identifier: MIT
// Help text and replies written from a model's table of inject verbs.
#include "devemu/inject_verbs.h"

#include <fmt/core.h>

namespace devemu {

std::string injectUsage(std::string_view name, std::string_view args)
{
	return args.empty() ? std::string(name) : fmt::format("{} {}", name, args);
}

std::string injectHelpLine(std::string_view name, std::string_view args, std::string_view help)
{
	/* The column of devemud --list-models; a longer usage keeps two spaces before its text. */
	std::string usage = injectUsage(name, args);
	return usage.size() < 22 ? fmt::format("{:<22}{}\n", usage, help) : fmt::format("{}  {}\n", usage, help);
}

std::string unknownInjectVerb(std::string_view verb, std::string_view verbList)
{
	return fmt::format("unknown verb '{}' ({})", verb, verbList);
}

} // namespace devemu
