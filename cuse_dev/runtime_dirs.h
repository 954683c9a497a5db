// SPDX-License-Identifier: MIT
// Where devemud and devemuctl find the control socket, FUSE mounts and config: the system's for root, the user's XDG dirs otherwise.
#pragma once

/*
 * devemud run by root uses the system's places (/run/devemu, /etc/devemu).
 * Run by an ordinary user it never touches them: its runtime directory is
 * $XDG_RUNTIME_DIR/devemu (or /tmp/devemu-UID when XDG_RUNTIME_DIR is not
 * set, as in a bare `su` or CI shell), private to the user (0700), and its
 * config file $XDG_CONFIG_HOME/devemu/devemud.toml (~/.config/...). Header
 * only: devemuctl resolves the same default socket as the daemon.
 */
#include <fmt/core.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace devemu {

inline constexpr const char *kSystemRuntimeDir = "/run/devemu";
inline constexpr const char *kSystemConfigPath = "/etc/devemu/devemud.toml";

/*
 * An ordinary user's instance (not root): the user's directories, FUSE through
 * fusermount3. Decided once, at the first call (devemud: while parsing its
 * command line), so a daemon started by root that drops to --user keeps the
 * system's places.
 */
inline bool userInstance()
{
	static const bool user = geteuid() != 0;
	return user;
}

/* True when the runtime directory comes from XDG_RUNTIME_DIR (else the /tmp fallback, worth a warning). */
inline bool userRuntimeFromXdg()
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	return xdg && xdg[0] == '/';
}

inline std::string runtimeDir()
{
	if (!userInstance())
		return kSystemRuntimeDir;
	if (userRuntimeFromXdg())
		return std::string(getenv("XDG_RUNTIME_DIR")) + "/devemu";
	return fmt::format("/tmp/devemu-{}", geteuid());
}

inline std::string defaultControlPath()
{
	return runtimeDir() + "/control";
}

inline std::string defaultConfigPath()
{
	if (!userInstance())
		return kSystemConfigPath;
	const char *xdg = getenv("XDG_CONFIG_HOME");
	if (xdg && xdg[0] == '/')
		return std::string(xdg) + "/devemu/devemud.toml";
	const char *home = getenv("HOME");
	return std::string(home && home[0] == '/' ? home : "") + "/.config/devemu/devemud.toml";
}

/*
 * Creates the runtime directory if missing: 0755 for the system's, 0700 for
 * a user's. A user's must be a directory of its own that nobody else can
 * enter (in /tmp anybody could have made it first). 0 or -errno with error.
 */
inline int ensureRuntimeDir(std::string &error)
{
	std::string dir = runtimeDir();
	bool user = userInstance();
	if (mkdir(dir.c_str(), user ? 0700 : 0755) < 0 && errno != EEXIST) {
		int err = errno;
		error = fmt::format("cannot create {}: {}", dir, strerror(err));
		return -err;
	}
	if (!user)
		return 0;
	struct stat st;
	if (lstat(dir.c_str(), &st) < 0) {
		int err = errno;
		error = fmt::format("cannot stat {}: {}", dir, strerror(err));
		return -err;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
		error = fmt::format("{} must be a directory owned by uid {} with mode 0700 (remove it, or set "
				    "XDG_RUNTIME_DIR)",
				    dir, geteuid());
		return -EPERM;
	}
	return 0;
}

} // namespace devemu
