// SPDX-License-Identifier: MIT
// watchdog: spawning the on_expiry command and collecting its exit status without blocking.
#include "expiry_command.h"

#include "devemu/log.h"

#include <fmt/core.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstring>

extern char **environ;

namespace devemu {

void ExpiryCommand::run(uint32_t expiries)
{
	std::vector<std::string> env;
	for (char **e = environ; e && *e; e++)
		if (std::strncmp(*e, "DEVEMU_DEVICE=", 14) != 0 && std::strncmp(*e, "DEVEMU_EXPIRIES=", 16) != 0)
			env.emplace_back(*e);
	env.push_back("DEVEMU_DEVICE=" + device_);
	env.push_back(fmt::format("DEVEMU_EXPIRIES={}", expiries));
	std::vector<char *> envp;
	for (auto &s : env)
		envp.push_back(s.data());
	envp.push_back(nullptr);
	std::string sh = "/bin/sh", dashC = "-c", cmd = command_;
	char *argv[] = { sh.data(), dashC.data(), cmd.data(), nullptr };

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	/* Its own process group, and default signal dispositions and mask. */
	sigset_t all, none;
	sigfillset(&all);
	sigemptyset(&none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
	pid_t pid;
	int err = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp.data());
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&actions);
	if (err) {
		DEVEMU_LOG(Error, device_, "cannot run the on_expiry command: {}", strerror(err));
		return;
	}
	children_.push_back(pid);
	reap();
}

void ExpiryCommand::reap()
{
	std::erase_if(children_, [this](pid_t pid) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == 0)
			return false;
		if (r == pid) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				DEVEMU_LOG(Info, device_, "on_expiry command (pid {}) finished", pid);
			else
				DEVEMU_LOG(Warning, device_, "on_expiry command (pid {}) failed: {}", pid,
					   WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
							     : fmt::format("signal {}", WTERMSIG(status)));
		}
		return true; /* done, or not ours to wait for (ECHILD) */
	});
	if (!children_.empty())
		reaper_.after(std::chrono::milliseconds(100), [this] { reap(); });
}

} // namespace devemu
