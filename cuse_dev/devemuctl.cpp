// SPDX-License-Identifier: MIT
// devemuctl: talks to a running devemud over its control socket (list, stats, add, remove, inject, fault).
#include "control/protocol.h"
#include "runtime_dirs.h"

#include <boost/program_options.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

using namespace devemu;
using nlohmann::json;
namespace po = boost::program_options;

namespace {

constexpr const char *kUsage =
	"Usage: devemuctl [--socket PATH] [--json] COMMAND [ARGS...]\n"
	"Commands:\n"
	"  list                                   devices: name, model, transport, node, state, open files\n"
	"  stats NAME                             per-operation counts, errors, bytes and latency histogram\n"
	"  add NAME=MODEL[,key=value...]          serve a new device now\n"
	"  remove NAME                            stop serving it (waiting callers get ENODEV, later\n"
	"                                         calls on open files fail too, ENOTCONN on CUSE/FUSE)\n"
	"  inject NAME VERB [ARGS...]             the model's control side (devemud --list-models shows verbs)\n"
	"  fault NAME --op OP (--errno E | --delay 50ms | --short N) [--count N]\n"
	"                                         make the next requests of OP (read, write, ioctl, open, poll)\n"
	"                                         fail, wait or move fewer bytes; a new fault for an\n"
	"                                         operation replaces its old one\n"
	"  fault NAME --clear                     remove the device's faults\n"
	"  version                                the daemon's version and protocol\n";

int fail(const std::string &message)
{
	fmt::print(stderr, "devemuctl: {}\n", message);
	return 1;
}

/* One request, one response line. */
bool roundTrip(const std::string &path, const json &request, json &response, std::string &error)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (path.size() >= sizeof(addr.sun_path)) {
		error = "socket path too long";
		return false;
	}
	std::memcpy(addr.sun_path, path.c_str(), path.size());
	if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) < 0) {
		error = fmt::format("cannot reach devemud at {}: {} (is it running? is --control set?)", path,
				    strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	/* Arguments that are not UTF-8 (inject bytes as \xNN escapes instead) are replaced, not thrown over. */
	std::string out = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
	for (size_t done = 0; done < out.size();) {
		ssize_t n = write(fd, out.data() + done, out.size() - done);
		if (n <= 0) {
			error = fmt::format("write: {}", strerror(errno));
			close(fd);
			return false;
		}
		done += static_cast<size_t>(n);
	}
	std::string in;
	char buf[4096];
	while (in.find('\n') == std::string::npos) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			error = "devemud closed the connection without an answer";
			close(fd);
			return false;
		}
		in.append(buf, static_cast<size_t>(n));
	}
	close(fd);
	try {
		response = json::parse(in.substr(0, in.find('\n')));
	} catch (const json::exception &e) {
		error = fmt::format("bad response: {}", e.what());
		return false;
	}
	return true;
}

std::string join(const json &array)
{
	std::string out;
	for (const auto &v : array)
		out += (out.empty() ? "" : ",") + v.get<std::string>();
	return out.empty() ? "-" : out;
}

void printList(const json &r)
{
	fmt::print("{:<16} {:<10} {:<11} {:<28} {:<9} {}\n", "NAME", "MODEL", "TRANSPORT", "NODE", "STATE", "OPEN");
	for (const auto &d : r[key::devices])
		fmt::print("{:<16} {:<10} {:<11} {:<28} {:<9} {}\n", d[key::name].get<std::string>(),
			   d[key::model].get<std::string>(), join(d[key::transports]), join(d[key::nodes]),
			   d[key::state].get<std::string>(), d[key::openFiles].get<uint64_t>());
}

void printStats(const json &r)
{
	fmt::print(
		"device {}: {} open files, {} opens, {} bytes in, {} bytes out, {} dropped, {} waited, {} cancelled\n",
		r[key::name].get<std::string>(), r[key::openFiles].get<uint64_t>(), r[key::opens].get<uint64_t>(),
		r[key::bytesIn].get<uint64_t>(), r[key::bytesOut].get<uint64_t>(), r[key::dropped].get<uint64_t>(),
		r[key::waited].get<uint64_t>(), r[key::cancelled].get<uint64_t>());
	fmt::print("{:<8} {:>10} {:>8}  latency (count below N us; in-kernel: served from FIFOs)\n", "OP", "REQUESTS",
		   "ERRORS");
	for (const auto &[op, s] : r[key::operations].items()) {
		std::string hist;
		if (uint64_t inKernel = s.value(key::inKernel, uint64_t(0)))
			hist += fmt::format(" in-kernel:{}", inKernel);
		for (const auto &b : s[key::latency])
			hist += b[key::belowUs].is_null() ? fmt::format(" slower:{}", b[key::count].get<uint64_t>())
							  : fmt::format(" <{}:{}", b[key::belowUs].get<uint64_t>(),
									b[key::count].get<uint64_t>());
		fmt::print("{:<8} {:>10} {:>8} {}\n", op, s[key::requests].get<uint64_t>(),
			   s[key::errors].get<uint64_t>(), hist);
	}
	for (const auto &f : r[key::faults])
		fmt::print("fault: {} errno={} delay={}ms short={} remaining={} hits={}\n",
			   f[key::op].get<std::string>(), f[key::errnoValue].get<int>(), f[key::delayMs].get<int64_t>(),
			   f[key::shortLen].dump(), f[key::remaining].get<int64_t>(), f[key::hits].get<uint64_t>());
}

/* "50ms", "2s", "100" (ms). */
bool parseDelay(const std::string &text, int64_t &ms)
{
	int64_t v = 0;
	auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
	if (ec != std::errc())
		return false;
	std::string_view unit(p, text.data() + text.size() - p);
	if (unit == "" || unit == "ms")
		ms = v;
	else if (unit == "s")
		ms = v * 1000;
	else
		return false;
	return ms > 0;
}

} // namespace

int main(int argc, char **argv)
{
	std::string socketPath = defaultControlPath();
	bool asJson = false;
	std::vector<std::string> words;
	std::string op, errnoText, delay, shortText;
	int64_t count = -1;
	std::string socketHelp = fmt::format("control socket (default {})", socketPath);
	po::options_description desc("Options");
	desc.add_options()("help,h", "show this help")("socket,s", po::value(&socketPath), socketHelp.c_str())(
		"json", "print the daemon's JSON response")("op", po::value(&op), "fault: read|write|ioctl|open|poll")(
		"errno", po::value(&errnoText), "fault: fail with this errno (EIO, ENODEV... or a number)")(
		"delay", po::value(&delay), "fault: hold each request this long (50ms, 2s)")(
		"short", po::value(&shortText), "fault: move at most N bytes per read/write")(
		"count", po::value(&count), "fault: only the next N requests (default: until cleared)")(
		"clear", "fault: remove the device's faults")("args", po::value(&words));
	po::positional_options_description positional;
	positional.add("args", -1);
	po::variables_map vm;
	try {
		po::store(po::command_line_parser(argc, argv).options(desc).positional(positional).run(), vm);
		po::notify(vm);
	} catch (const po::error &e) {
		return fail(fmt::format("{}\n{}", e.what(), kUsage));
	}
	if (vm.count("help") || words.empty()) {
		fmt::print("{}", kUsage);
		return words.empty() && !vm.count("help") ? 2 : 0;
	}
	asJson = vm.count("json") > 0;
	const std::string &command = words[0];
	json request = { { key::version, kControlProtocolVersion }, { key::command, command } };
	auto needArgs = [&](size_t n) { return words.size() >= n; };

	if (command == cmd::list || command == cmd::version) {
	} else if (command == cmd::stats || command == cmd::remove) {
		if (!needArgs(2))
			return fail(fmt::format("{} needs a device name", command));
		request[key::device] = words[1];
	} else if (command == cmd::add) {
		if (!needArgs(2))
			return fail("add needs NAME=MODEL[,key=value...]");
		request[key::spec] = words[1];
	} else if (command == cmd::inject) {
		if (!needArgs(3))
			return fail("inject needs a device name and a verb");
		request[key::device] = words[1];
		request[key::args] = std::vector<std::string>(words.begin() + 2, words.end());
	} else if (command == cmd::fault) {
		if (!needArgs(2))
			return fail("fault needs a device name");
		request[key::device] = words[1];
		if (vm.count("clear")) {
			request[key::clear] = true;
		} else {
			if (op.empty())
				return fail("fault needs --op read|write|ioctl|open|poll");
			request[key::op] = op;
			if (!errnoText.empty()) {
				int n = 0;
				auto [p, ec] =
					std::from_chars(errnoText.data(), errnoText.data() + errnoText.size(), n);
				request[key::errnoValue] = ec == std::errc() && p == errnoText.data() + errnoText.size()
								   ? json(n)
								   : json(errnoText);
			}
			if (!delay.empty()) {
				int64_t ms;
				if (!parseDelay(delay, ms))
					return fail(fmt::format("--delay '{}': expected a duration such as 50ms or 2s",
								delay));
				request[key::delayMs] = ms;
			}
			if (!shortText.empty()) {
				uint32_t n = 0;
				auto [p, ec] =
					std::from_chars(shortText.data(), shortText.data() + shortText.size(), n);
				if (ec != std::errc() || p != shortText.data() + shortText.size())
					return fail(fmt::format("--short '{}': expected a byte count from 0 to {}",
								shortText, UINT32_MAX));
				request[key::shortLen] = n;
			}
			if (count != -1)
				request[key::count] = count;
		}
	} else {
		return fail(fmt::format("unknown command '{}'\n{}", command, kUsage));
	}

	json response;
	std::string error;
	if (!roundTrip(socketPath, request, response, error))
		return fail(error);
	if (asJson) {
		fmt::print("{}\n", response.dump(2));
		return response.value(key::ok, false) ? 0 : 1;
	}
	if (!response.value(key::ok, false))
		return fail(response.value(key::error, "the daemon refused the request"));
	if (command == cmd::list)
		printList(response);
	else if (command == cmd::stats)
		printStats(response);
	else if (command == cmd::add)
		fmt::print("serving {}\n", join(response[key::device][key::nodes]));
	else if (command == cmd::remove)
		fmt::print("removed {} ({} open files were cut off)\n", response[key::removed].get<std::string>(),
			   response[key::openFiles].get<uint64_t>());
	else if (command == cmd::inject)
		fmt::print("{}\n", response[key::reply].get<std::string>());
	else if (command == cmd::fault)
		fmt::print("{}\n", vm.count("clear") ? "faults cleared" : "fault set");
	else if (command == cmd::version)
		fmt::print("devemud {} (protocol {})\n", response[key::version].get<std::string>(),
			   response[key::protocol].get<int>());
	return 0;
}
