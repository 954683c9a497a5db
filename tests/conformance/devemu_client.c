// SPDX-License-Identifier: MIT
// devemu_client: a small static libc-only client the conformance suite drives where Python is awkward.
//
// Usage: devemu_client COMMAND [ARGS...]; run without arguments for the list.
// Every command prints machine-readable lines on stdout and exits 0 on success,
// 1 on a contract violation it detected itself, 2 on a usage or setup error,
// 3 when a system call failed in a way the caller asked it to report.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <devemu/uapi/devemu.h>

#define FRAME_MAGIC 0x444d4546U /* "FEMD" little-endian: a soak frame */
#define FRAME_KIND_DATA 0U
#define FRAME_KIND_END 1U
#define FRAME_MIN 32U
#define FRAME_MAX 4096U

static const char *errname(int e)
{
	switch (e) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EPIPE: return "EPIPE";
	case ENOSYS: return "ENOSYS";
	case ENOTCONN: return "ENOTCONN";
	case ECONNABORTED: return "ECONNABORTED";
	case ECONNRESET: return "ECONNRESET";
	case ESHUTDOWN: return "ESHUTDOWN";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECANCELED: return "ECANCELED";
	default: return "EUNKNOWN";
	}
}

static void die_usage(const char *msg)
{
	fprintf(stderr, "devemu_client: %s\n", msg);
	fprintf(stderr,
		"usage: devemu_client COMMAND ARGS\n"
		"  abi                                print the devemu ioctl numbers of the uapi header\n"
		"  write NODE                         copy stdin to NODE\n"
		"  read NODE COUNT                    read exactly COUNT bytes from NODE to stdout\n"
		"  echo NODE SIZE [SEED]              write SIZE random bytes (child) and read them back\n"
		"  read-eintr NODE COUNT              block in read, report SIGUSR1's effect, then read COUNT bytes\n"
		"  write-eintr NODE SIZE              block in write of SIZE bytes, report SIGUSR1's effect\n"
		"  block-read NODE COUNT              block in read, report the result and errno\n"
		"  soak-write NODE WRITER COUNT FRAME write COUNT framed messages\n"
		"  soak-read NODE FRAME               read frames until an end frame, print 'W SEQ' per frame\n"
		"  soak-end NODE COUNT FRAME          write COUNT end frames\n"
		"  counters NODE                      print DEVEMU_IOC_COUNTERS\n"
		"  nread NODE                         print DEVEMU_IOC_NREAD\n"
		"  ioctl-efault NODE                  DEVEMU_IOC_COUNTERS with arg 1, then a valid one\n");
	exit(2);
}

static unsigned long long parse_u64(const char *s)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || !end || *end || end == s)
		die_usage("bad number");
	return v;
}

static int open_node(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0) {
		printf("error open %s %s\n", errname(errno), strerror(errno));
		fflush(stdout);
		exit(3);
	}
	return fd;
}

/* Write all of buf (blocking fd); returns 0 or the errno. Retries EINTR and partial writes. */
static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static void fill_random(unsigned char *buf, size_t len, uint64_t seed)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(xorshift(&s) >> 24);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_hex_line(const char *tag, const unsigned char *buf, size_t len)
{
	printf("%s ", tag);
	for (size_t i = 0; i < len; i++)
		printf("%02x", buf[i]);
	printf("\n");
}

static int cmd_abi(void)
{
	printf("DEVEMU_IOC_COUNTERS 0x%08lx\n", (unsigned long)DEVEMU_IOC_COUNTERS);
	printf("DEVEMU_IOC_NREAD 0x%08lx\n", (unsigned long)DEVEMU_IOC_NREAD);
	printf("sizeof_devemu_counters %zu\n", sizeof(struct devemu_counters));
	return 0;
}

static int cmd_write(const char *node)
{
	int fd = open_node(node, O_WRONLY);
	unsigned char buf[65536];
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			printf("error stdin %s\n", errname(errno));
			return 3;
		}
		if (n == 0)
			break;
		int e = write_all(fd, buf, (size_t)n);
		if (e) {
			printf("error write %s %s\n", errname(e), strerror(e));
			return 3;
		}
	}
	close(fd);
	return 0;
}

static int cmd_read(const char *node, size_t count)
{
	int fd = open_node(node, O_RDONLY);
	unsigned char buf[65536];
	while (count > 0) {
		size_t want = count < sizeof(buf) ? count : sizeof(buf);
		ssize_t n = read(fd, buf, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "devemu_client: read: %s\n", strerror(errno));
			return 3;
		}
		if (n == 0) {
			fprintf(stderr, "devemu_client: read: unexpected end of file with %zu bytes to go\n",
				count);
			return 1;
		}
		if (write_all(1, buf, (size_t)n))
			return 3;
		count -= (size_t)n;
	}
	close(fd);
	return 0;
}

static int cmd_echo(const char *node, size_t size, uint64_t seed)
{
	unsigned char *data = malloc(size ? size : 1);
	unsigned char *back = malloc(size ? size : 1);
	if (!data || !back)
		return 2;
	fill_random(data, size, seed);

	int rfd = open_node(node, O_RDONLY);
	pid_t pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		int wfd = open(node, O_WRONLY | O_CLOEXEC);
		if (wfd < 0)
			_exit(10);
		/* One write(2) call: a blocking write returns only when all bytes were accepted. */
		ssize_t n = write(wfd, data, size);
		if (n < 0)
			_exit(11);
		if ((size_t)n != size)
			_exit(12);
		_exit(0);
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(rfd, back + got, size - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			printf("error read %s after %zu bytes\n", errname(errno), got);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return 3;
		}
		if (n == 0) {
			printf("error eof after %zu bytes\n", got);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return 1;
		}
		got += (size_t)n;
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		printf("error writer exit %d (%s)\n", code,
		       code == 10 ? "open failed" : code == 11 ? "write failed" :
		       code == 12 ? "short write" : "killed");
		return 1;
	}
	for (size_t i = 0; i < size; i++) {
		if (data[i] != back[i]) {
			printf("mismatch at offset %zu: wrote 0x%02x read 0x%02x\n", i, data[i], back[i]);
			return 1;
		}
	}
	printf("ok %zu\n", size);
	close(rfd);
	free(data);
	free(back);
	return 0;
}

static volatile sig_atomic_t got_signal;

static void on_sigusr1(int sig)
{
	(void)sig;
	got_signal = 1;
}

static void install_no_restart_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART */
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		exit(2);
}

static int cmd_read_eintr(const char *node, size_t count)
{
	install_no_restart_handler();
	int fd = open_node(node, O_RDONLY);
	unsigned char *buf = malloc(count ? count : 1);
	if (!buf)
		return 2;
	printf("ready\n");
	fflush(stdout);
	size_t got = 0;
	ssize_t n = read(fd, buf, count);
	if (n < 0 && errno == EINTR) {
		printf("interrupted EINTR signal=%d\n", (int)got_signal);
	} else if (n < 0) {
		printf("error first-read %s\n", errname(errno));
		free(buf);
		return 3;
	} else {
		printf("restarted signal=%d\n", (int)got_signal);
		got = (size_t)n;
	}
	fflush(stdout);
	while (got < count) {
		n = read(fd, buf + got, count - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			printf("error read %s after %zu bytes\n", errname(errno), got);
			free(buf);
			return 3;
		}
		if (n == 0) {
			printf("error eof after %zu bytes\n", got);
			free(buf);
			return 1;
		}
		got += (size_t)n;
	}
	print_hex_line("data", buf, count);
	free(buf);
	return 0;
}

static int cmd_write_eintr(const char *node, size_t size)
{
	install_no_restart_handler();
	int fd = open_node(node, O_WRONLY);
	unsigned char *buf = malloc(size ? size : 1);
	if (!buf)
		return 2;
	for (size_t i = 0; i < size; i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	printf("ready\n");
	fflush(stdout);
	ssize_t n = write(fd, buf, size);
	int err = errno;
	if (n < 0 && err == EINTR)
		printf("interrupted EINTR signal=%d\n", (int)got_signal);
	else if (n < 0)
		printf("error write %s\n", errname(err));
	else
		printf("wrote %zd signal=%d\n", n, (int)got_signal);
	free(buf);
	return n < 0 && err != EINTR ? 3 : 0;
}

static int cmd_block_read(const char *node, size_t count)
{
	int fd = open_node(node, O_RDONLY);
	unsigned char *buf = malloc(count ? count : 1);
	if (!buf)
		return 2;
	printf("ready\n");
	fflush(stdout);
	double t0 = now_s();
	ssize_t n = read(fd, buf, count);
	int e = errno;
	double dt = now_s() - t0;
	free(buf);
	if (n < 0) {
		printf("error %s %.3f\n", errname(e), dt);
		return 3;
	}
	printf("read %zd %.3f\n", n, dt);
	return 0;
}

static uint32_t fnv1a(const unsigned char *p, size_t len)
{
	uint32_t h = 2166136261U;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619U;
	}
	return h;
}

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void put16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static uint16_t get16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static unsigned char payload_byte(uint32_t writer, uint32_t seq, uint32_t j)
{
	uint32_t x = writer * 2654435761U ^ seq * 40503U ^ j * 2246822519U;
	x ^= x >> 15;
	x *= 2246822507U;
	x ^= x >> 13;
	return (unsigned char)x;
}

/* Frame layout: magic u32 | writer u16 | kind u16 | seq u32 | size u32 | payload | fnv1a u32 */
static void build_frame(unsigned char *f, uint32_t size, uint32_t writer, uint32_t kind, uint32_t seq)
{
	put32(f, FRAME_MAGIC);
	put16(f + 4, (uint16_t)writer);
	put16(f + 6, (uint16_t)kind);
	put32(f + 8, seq);
	put32(f + 12, size);
	for (uint32_t j = 16; j < size - 4; j++)
		f[j] = payload_byte(writer, seq, j);
	put32(f + size - 4, fnv1a(f, size - 4));
}

/* Returns NULL if the frame is valid, else a reason. */
static const char *check_frame(const unsigned char *f, uint32_t size)
{
	if (get32(f) != FRAME_MAGIC)
		return "bad-magic";
	if (get32(f + 12) != size)
		return "bad-size";
	if (get32(f + size - 4) != fnv1a(f, size - 4))
		return "bad-checksum";
	uint32_t writer = get16(f + 4), seq = get32(f + 8);
	for (uint32_t j = 16; j < size - 4; j++)
		if (f[j] != payload_byte(writer, seq, j))
			return "bad-payload";
	return NULL;
}

static uint32_t parse_frame_size(const char *s)
{
	unsigned long long v = parse_u64(s);
	if (v < FRAME_MIN || v > FRAME_MAX || v % 4)
		die_usage("frame size must be a multiple of 4 in [32, 4096]");
	return (uint32_t)v;
}

static int cmd_soak_write(const char *node, uint32_t writer, uint64_t count, uint32_t size)
{
	int fd = open_node(node, O_WRONLY);
	unsigned char f[FRAME_MAX];
	for (uint64_t seq = 0; seq < count; seq++) {
		build_frame(f, size, writer, FRAME_KIND_DATA, (uint32_t)seq);
		ssize_t n;
		do
			n = write(fd, f, size);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			printf("error write %s at seq %llu\n", errname(errno), (unsigned long long)seq);
			return 3;
		}
		if ((size_t)n != size) {
			printf("short-write %zd of %u at seq %llu\n", n, size, (unsigned long long)seq);
			return 1;
		}
	}
	printf("done %llu\n", (unsigned long long)count);
	return 0;
}

static int cmd_soak_end(const char *node, uint64_t count, uint32_t size)
{
	int fd = open_node(node, O_WRONLY);
	unsigned char f[FRAME_MAX];
	for (uint64_t i = 0; i < count; i++) {
		build_frame(f, size, 0xffff, FRAME_KIND_END, (uint32_t)i);
		int e = write_all(fd, f, size);
		if (e) {
			printf("error write %s\n", errname(e));
			return 3;
		}
	}
	printf("done %llu\n", (unsigned long long)count);
	return 0;
}

static int cmd_soak_read(const char *node, uint32_t size)
{
	int fd = open_node(node, O_RDONLY);
	unsigned char f[FRAME_MAX];
	static char out[1 << 16];
	setvbuf(stdout, out, _IOFBF, sizeof(out));
	uint64_t frames = 0;
	for (;;) {
		ssize_t n;
		do
			n = read(fd, f, size);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			printf("error read %s after %llu frames\n", errname(errno), (unsigned long long)frames);
			return 3;
		}
		if ((size_t)n != size) {
			/* Writes are atomic and every read asks for one frame, so a read that returns
			 * data returns exactly one frame. */
			printf("short-read %zd of %u after %llu frames\n", n, size, (unsigned long long)frames);
			return 1;
		}
		const char *bad = check_frame(f, size);
		if (bad) {
			printf("%s after %llu frames\n", bad, (unsigned long long)frames);
			return 1;
		}
		if (get16(f + 6) == FRAME_KIND_END) {
			printf("end %llu\n", (unsigned long long)frames);
			return 0;
		}
		printf("%u %u\n", (unsigned)get16(f + 4), (unsigned)get32(f + 8));
		frames++;
	}
}

static int cmd_counters(const char *node)
{
	int fd = open_node(node, O_RDONLY | O_NONBLOCK);
	struct devemu_counters c;
	memset(&c, 0, sizeof(c));
	if (ioctl(fd, DEVEMU_IOC_COUNTERS, &c) != 0) {
		printf("error ioctl %s\n", errname(errno));
		return 3;
	}
	printf("bytes_in %llu\nbytes_out %llu\nopens %llu\ndropped %llu\n",
	       (unsigned long long)c.bytes_in, (unsigned long long)c.bytes_out,
	       (unsigned long long)c.opens, (unsigned long long)c.dropped);
	return 0;
}

static int cmd_nread(const char *node)
{
	int fd = open_node(node, O_RDONLY | O_NONBLOCK);
	__u32 v = 0xffffffffU;
	if (ioctl(fd, DEVEMU_IOC_NREAD, &v) != 0) {
		printf("error ioctl %s\n", errname(errno));
		return 3;
	}
	printf("nread %u\n", (unsigned)v);
	return 0;
}

static int cmd_ioctl_efault(const char *node)
{
	int fd = open_node(node, O_RDONLY | O_NONBLOCK);
	int r = ioctl(fd, DEVEMU_IOC_COUNTERS, (void *)1);
	printf("invalid-pointer %s\n", r == 0 ? "OK" : errname(errno));
	struct devemu_counters c;
	r = ioctl(fd, DEVEMU_IOC_COUNTERS, &c);
	printf("valid-pointer %s\n", r == 0 ? "OK" : errname(errno));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		die_usage("missing command");
	const char *cmd = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	if (!strcmp(cmd, "abi") && argc == 2)
		return cmd_abi();
	if (!strcmp(cmd, "write") && argc == 3)
		return cmd_write(argv[2]);
	if (!strcmp(cmd, "read") && argc == 4)
		return cmd_read(argv[2], (size_t)parse_u64(argv[3]));
	if (!strcmp(cmd, "echo") && (argc == 4 || argc == 5))
		return cmd_echo(argv[2], (size_t)parse_u64(argv[3]), argc == 5 ? parse_u64(argv[4]) : 1);
	if (!strcmp(cmd, "read-eintr") && argc == 4)
		return cmd_read_eintr(argv[2], (size_t)parse_u64(argv[3]));
	if (!strcmp(cmd, "write-eintr") && argc == 4)
		return cmd_write_eintr(argv[2], (size_t)parse_u64(argv[3]));
	if (!strcmp(cmd, "block-read") && argc == 4)
		return cmd_block_read(argv[2], (size_t)parse_u64(argv[3]));
	if (!strcmp(cmd, "soak-write") && argc == 6)
		return cmd_soak_write(argv[2], (uint32_t)parse_u64(argv[3]), parse_u64(argv[4]),
				      parse_frame_size(argv[5]));
	if (!strcmp(cmd, "soak-read") && argc == 4)
		return cmd_soak_read(argv[2], parse_frame_size(argv[3]));
	if (!strcmp(cmd, "soak-end") && argc == 5)
		return cmd_soak_end(argv[2], parse_u64(argv[3]), parse_frame_size(argv[4]));
	if (!strcmp(cmd, "counters") && argc == 3)
		return cmd_counters(argv[2]);
	if (!strcmp(cmd, "nread") && argc == 3)
		return cmd_nread(argv[2]);
	if (!strcmp(cmd, "ioctl-efault") && argc == 3)
		return cmd_ioctl_efault(argv[2]);
	die_usage("unknown command or wrong arguments");
	return 2;
}
