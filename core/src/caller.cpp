// SPDX-License-Identifier: MIT
// callerCapable(): the capabilities of a request's caller, from the driver's report or from /proc.
#include "devemu/caller.h"
#include "devemu/text_file.h"

#include <sys/stat.h>

#include <sstream>
#include <string>
#include <utility>

namespace devemu {

namespace {

std::optional<std::string> slurp(const std::string &path)
{
	std::string text, error;
	return readTextFile(path, text, error) ? std::optional(std::move(text)) : std::nullopt;
}

/*
 * Whether thread tid runs in the daemon's own user namespace: the namespace links compared where
 * the daemon may read them (ptrace access), else the uid maps (readable by anyone; two namespaces
 * with the same map are taken as one, which only the initial namespace's full map makes likely).
 */
std::optional<bool> sameUserNamespace(pid_t tid)
{
	struct stat mine{}, theirs{};
	std::string ns = "/proc/" + std::to_string(tid) + "/ns/user";
	if (stat("/proc/self/ns/user", &mine) == 0 && stat(ns.c_str(), &theirs) == 0)
		return mine.st_ino == theirs.st_ino && mine.st_dev == theirs.st_dev;
	auto ours = slurp("/proc/self/uid_map");
	auto callers = slurp("/proc/" + std::to_string(tid) + "/uid_map");
	if (!ours || !callers)
		return std::nullopt;
	return *ours == *callers;
}

} // namespace

std::optional<uint64_t> procCapabilities(pid_t tid)
{
	if (tid <= 0)
		return std::nullopt;
	auto status = slurp("/proc/" + std::to_string(tid) + "/status");
	if (!status)
		return std::nullopt;
	std::istringstream lines(*status);
	std::string line;
	std::optional<uint64_t> effective;
	while (std::getline(lines, line))
		if (line.rfind("CapEff:", 0) == 0) {
			try {
				effective = std::stoull(line.substr(7), nullptr, 16);
			} catch (const std::exception &) {
				return std::nullopt;
			}
			break;
		}
	if (!effective)
		return std::nullopt;
	auto same = sameUserNamespace(tid);
	if (!same)
		return std::nullopt;
	return *same ? *effective : 0;
}

bool callerCapable(pid_t callerPid, const std::optional<uint64_t> &callerCaps, int cap)
{
	if (cap < 0 || cap > 63)
		return false;
	std::optional<uint64_t> caps = callerCaps ? callerCaps : procCapabilities(callerPid);
	return caps && (*caps >> cap & 1);
}

bool callerCapable(const OpenFile &file, int cap)
{
	return callerCapable(file.callerPid, file.callerCaps, cap);
}

} // namespace devemu
