// SPDX-License-Identifier: MIT
// stream_bench: one writer process and one reader process moving bytes through a kernel pipe or a devemu loopback node.

/*
 * The shape of a pipe: the writer writes SIZE bytes per call, the reader
 * reads up to 128 KiB per call, for SECONDS; the result is one line:
 *
 *   label size seconds bytes mb_per_s writes_per_s
 *
 * --pipe measures pipe(2); --node PATH opens PATH once for writing (in the
 * writer) and once for reading (in the reader). The bytes the reader counted
 * are the result; the writer stops at the deadline and the reader drains.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *node = NULL, *label = "stream";
	size_t size = 4096;
	double seconds = 1;
	int pipefd[2] = { -1, -1 }, report[2], opt;
	uint64_t start, stop, bytes = 0, writes = 0;
	pid_t writer;
	char *buf;

	while ((opt = getopt(argc, argv, "n:ps:t:l:")) != -1) {
		switch (opt) {
		case 'n': node = optarg; break;
		case 'p': node = NULL; if (pipe(pipefd) < 0) { perror("pipe"); return 1; } break;
		case 's': size = strtoul(optarg, NULL, 0); break;
		case 't': seconds = strtod(optarg, NULL); break;
		case 'l': label = optarg; break;
		default:
			fprintf(stderr, "usage: %s (-p | -n NODE) [-s SIZE] [-t SECONDS] [-l LABEL]\n", argv[0]);
			return 2;
		}
	}
	if ((!node && pipefd[0] < 0) || !size || pipe(report) < 0) {
		fprintf(stderr, "stream_bench: need -p or -n NODE, and a size\n");
		return 2;
	}
	buf = calloc(1, size > 131072 ? size : 131072);
	if (!buf)
		return 1;
	start = now_ns();
	stop = start + (uint64_t)(seconds * 1e9);
	writer = fork();
	if (writer == 0) {
		int fd = node ? open(node, O_WRONLY | O_CLOEXEC) : pipefd[1];

		if (fd < 0) {
			perror(node);
			_exit(1);
		}
		if (pipefd[0] >= 0)
			close(pipefd[0]);
		while (now_ns() < stop) {
			for (int i = 0; i < 64; i++) {
				if (write(fd, buf, size) < 0) {
					perror("write");
					_exit(1);
				}
				writes++;
			}
		}
		if (write(report[1], &writes, sizeof(writes)) != sizeof(writes))
			_exit(1);
		/* A last byte tells the reader we are done (a pipe: EOF on close). */
		if (node && write(fd, buf, 1) < 0)
			_exit(1);
		_exit(0);
	}
	{
		int fd = node ? open(node, O_RDONLY | O_CLOEXEC) : pipefd[0];
		ssize_t n;
		int status;

		if (fd < 0) {
			perror(node);
			kill(writer, SIGKILL);
			return 1;
		}
		if (pipefd[1] >= 0)
			close(pipefd[1]);
		/* Keep reading while waiting for the writer's count: it may be blocked on a full stream. */
		fcntl(report[0], F_SETFL, O_NONBLOCK);
		for (;;) {
			n = read(fd, buf, 131072);
			if (n <= 0)
				break;
			bytes += (uint64_t)n;
			/* A node never ends: stop once the writer reported and the stream ran dry. */
			if (node && now_ns() >= stop) {
				uint64_t w;

				if (read(report[0], &w, sizeof(w)) == sizeof(w)) {
					writes = w;
					while (bytes < writes * size + 1) {
						n = read(fd, buf, 131072);
						if (n <= 0)
							break;
						bytes += (uint64_t)n;
					}
					bytes = writes * size;
					break;
				}
			}
		}
		if (!node) {
			fcntl(report[0], F_SETFL, 0);
			if (read(report[0], &writes, sizeof(writes)) != sizeof(writes))
				writes = 0;
		}
		waitpid(writer, &status, 0);
		stop = now_ns();
	}
	printf("label=%s size=%zu seconds=%.3f bytes=%" PRIu64 " mb_per_s=%.3f writes_per_s=%.0f\n", label, size,
	       (stop - start) / 1e9, bytes, bytes / ((stop - start) / 1e3), writes / ((stop - start) / 1e9));
	return 0;
}
