// SPDX-License-Identifier: MIT
// Fuzz target: inject text (escapes, hex bytes, word lists) as devemuctl inject hands it to a model.
#include "devemu/inject_text.h"

#include "fuzz_input.h"

#include <string>
#include <vector>

using namespace devemu;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view text(reinterpret_cast<const char *>(data), size);
	std::vector<uint8_t> out;
	std::string error;
	parseEscapedBytes(text, out, error);
	out.clear();
	parseHexBytes(text, out, error);
	/* The same text as a verb and its words, split at spaces as a shell would. */
	std::vector<std::string> words{ "data" };
	size_t at = 0;
	while (at <= text.size()) {
		size_t space = text.find(' ', at);
		if (space == std::string_view::npos)
			space = text.size();
		words.emplace_back(text.substr(at, space - at));
		at = space + 1;
	}
	out.clear();
	parseInjectBytes(words, out, error);
	words[0] = "hex";
	out.clear();
	parseInjectBytes(words, out, error);
	(void)joinInjectArgs(words);
	return 0;
}
