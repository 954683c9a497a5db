// SPDX-License-Identifier: MIT
// A model's devemuctl inject verbs as one table: inject() dispatches on it and the help text is written from it.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <vector>

namespace devemu {

/*
 * One verb of a model M: devemuctl inject NAME VERB ARGS... runs (model.*run)
 * with every word, the verb first. args is how the arguments read in help
 * ("TEXT", "ADDR [CELSIUS]"), help what the verb does, in one line.
 */
template<typename M>
struct InjectVerb {
	std::string_view name;
	std::string_view args;
	std::string_view help;
	int (M::*run)(const std::vector<std::string> &words, std::string &reply);
};

/* "data TEXT" (the verb and its arguments). */
std::string injectUsage(std::string_view name, std::string_view args);
/* One line of ModelInfo::injectHelp: the usage, then what it does. */
std::string injectHelpLine(std::string_view name, std::string_view args, std::string_view help);
/* The reply to an unknown verb. */
std::string unknownInjectVerb(std::string_view verb, std::string_view verbList);

/* ModelInfo::injectHelp: one line per verb. */
template<typename Verbs>
std::string injectHelp(const Verbs &verbs)
{
	std::string out;
	for (const auto &v : verbs)
		out += injectHelpLine(v.name, v.args, v.help);
	return out;
}

/* "verbs: data TEXT, hex BYTES, clear": the reply to inject without a verb. */
template<typename Verbs>
std::string injectVerbList(const Verbs &verbs)
{
	std::string out = "verbs: ";
	bool first = true;
	for (const auto &v : verbs) {
		out += (first ? "" : ", ") + injectUsage(v.name, v.args);
		first = false;
	}
	return out;
}

/* Runs the verb words[0] names; -EINVAL with the list of verbs when there is none or it is unknown. */
template<typename M, typename Verbs>
int runInjectVerb(M &model, const Verbs &verbs, const std::vector<std::string> &words, std::string &reply)
{
	if (words.empty()) {
		reply = injectVerbList(verbs);
		return -EINVAL;
	}
	for (const auto &v : verbs)
		if (words[0] == v.name)
			return (model.*v.run)(words, reply);
	reply = unknownInjectVerb(words[0], injectVerbList(verbs));
	return -EINVAL;
}

} // namespace devemu
