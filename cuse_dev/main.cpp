// SPDX-License-Identifier: MIT
// devemud entry point: parse the command line, detach unless --foreground, serve.
#include "config.h"
#include "daemon.h"

#include <fmt/core.h>

#include <cstdio>
#include <fcntl.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace devemu;

namespace {

/*
 * Detaches: the parent waits until the child reports that every node exists
 * (or that it failed) and exits with that status, so `devemud && use-the-node`
 * works. Returns the write end of the status pipe in the child.
 */
int detach()
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		perror("devemud: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("devemud: fork");
		exit(1);
	}
	if (pid > 0) {
		close(fds[1]);
		char status = 1;
		if (read(fds[0], &status, 1) != 1) {
			int ws = 0;
			waitpid(pid, &ws, 0);
			exit(WIFEXITED(ws) && WEXITSTATUS(ws) ? WEXITSTATUS(ws) : 1);
		}
		exit(status);
	}
	close(fds[0]);
	setsid();
	if (chdir("/") < 0) {
		/* Not fatal: the daemon uses absolute paths only. */
	}
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		close(devnull);
	}
	return fds[1];
}

} // namespace

int main(int argc, char **argv)
{
	setProgramName("devemud");
	DaemonConfig config;
	ParseResult parsed = parseCommandLine(argc, argv, config);
	if (parsed.exitStatus) {
		fmt::print(*parsed.exitStatus ? stderr : stdout, "{}\n", parsed.message);
		return *parsed.exitStatus;
	}
	setLogLevel(config.logLevel);
	/*
	 * Large buffers (libfuse's 1 MiB receive buffer per device, model rings) always come from mmap and
	 * go back to the system when freed. glibc's default threshold rises after the first such free, and
	 * later devices' buffers then came from the heap and stayed there: 256 devices added and removed
	 * left 285 MiB resident (tests/soak/soak.py load, docs/reliability.md).
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);

	int statusFd = config.foreground ? -1 : detach();
	Daemon daemon(std::move(config));
	int status = daemon.run([statusFd] {
		if (statusFd >= 0) {
			char ok = 0;
			if (write(statusFd, &ok, 1) != 1) {
				/* The parent is gone; nothing to tell. */
			}
		}
	});
	if (statusFd >= 0)
		close(statusFd); /* a parent still waiting sees EOF and reports the failure */
	return status;
}
