// SPDX-License-Identifier: MIT
// devemu-trace: prints a recording in words (a devemu trace, an umockdev script or ioctl file, an evemu file).
#include "describe.h"

#include "trace/evemu.h"
#include "trace/trace.h"
#include "trace/umockdev_ioctl.h"

#include <boost/program_options.hpp>
#include <fmt/core.h>

#include <cstdio>
#include <iostream>
#include <string>

namespace po = boost::program_options;
using namespace devemu::trace;

namespace {

/* The format a file name suggests: .script, .ioctl, .events/.evemu, else a devemu trace. */
std::string formatOf(const std::string &path)
{
	auto ends = [&](std::string_view suffix) { return path.ends_with(suffix); };
	if (ends(".script"))
		return "script";
	if (ends(".ioctl"))
		return "ioctl";
	if (ends(".events") || ends(".evemu"))
		return "evemu";
	return "trace";
}

} // namespace

int main(int argc, char **argv)
{
	std::string command, path, format;
	po::options_description visible("devemu-trace print FILE [--format trace|script|ioctl|evemu]");
	visible.add_options()("help,h", "this help")(
		"format", po::value(&format),
		"what FILE is: a devemu trace, an umockdev script or ioctl file, an evemu recording (default: by "
		"its name: .script, .ioctl, .events or .evemu, else a trace)");
	po::options_description all;
	all.add(visible).add_options()("command", po::value(&command))("file", po::value(&path));
	po::positional_options_description positional;
	positional.add("command", 1).add("file", 1);
	po::variables_map vm;
	try {
		po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
		po::notify(vm);
	} catch (const po::error &e) {
		fmt::print(stderr, "devemu-trace: {}\n", e.what());
		return 2;
	}
	if (vm.count("help")) {
		std::cout << visible << "\nPrints each operation of a recording in words, one per line.\n";
		return 0;
	}
	if (command != "print" || path.empty()) {
		fmt::print(stderr,
			   "devemu-trace: usage: devemu-trace print FILE [--format trace|script|ioctl|evemu]\n");
		return 2;
	}
	if (format.empty())
		format = formatOf(path);
	Trace trace;
	std::string error;
	bool ok = format == "trace"    ? readTrace(path, trace, error)
		  : format == "script" ? readUmockdevScript(path, trace, error)
		  : format == "ioctl"  ? readUmockdevIoctl(path, trace, error)
		  : format == "evemu"
			  ? readEvemu(path, trace, error)
			  : (error = fmt::format("unknown format '{}' (trace, script, ioctl, evemu)", format), false);
	if (!ok) {
		fmt::print(stderr, "devemu-trace: {}\n", error);
		return 1;
	}
	if (!trace.device.empty())
		fmt::print("# recorded from {}\n", trace.device);
	for (const TraceOp &op : trace.ops)
		fmt::print("{}\n", describeOp(op));
	return 0;
}
