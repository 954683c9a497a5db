// SPDX-License-Identifier: MIT
// TransportKind: the ways a node can reach a device core, and the names users write for them.
#pragma once

#include <string_view>
#include <utility>

namespace devemu {

/* Auto picks CUSE when the kernel has it, else the FUSE fallback. */
enum class TransportKind { Auto, Cuse, Fuse, Kshim };

/* One table for --transport, the config file's transport keys and devemuctl list. */
inline constexpr std::pair<TransportKind, std::string_view> kTransportNames[] = {
	{ TransportKind::Auto, "auto" },
	{ TransportKind::Cuse, "cuse" },
	{ TransportKind::Fuse, "fuse" },
	{ TransportKind::Kshim, "kshim" },
};

constexpr std::string_view transportName(TransportKind kind)
{
	for (const auto &[k, name] : kTransportNames)
		if (k == kind)
			return name;
	return "?";
}

} // namespace devemu
