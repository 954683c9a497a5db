// SPDX-License-Identifier: MIT
// devemu_bench: per-op latency and throughput of read/write/poll/FIONREAD loops on one device node.

/*
 * Each of N threads opens the node itself, runs a few untimed warm-up ops,
 * meets the others at a barrier, then runs the op in a loop for a fixed
 * count or a fixed time. The result is one line, key=value by default or
 * JSON with --json:
 *
 *   label op size threads ops seconds ops_per_s mb_per_s mean_ns
 *   p50_ns p99_ns max_ns samples clock_ns errors errno node
 *
 * A clock read is not free (about 25 ns natively, about 1 us in a TCG
 * guest, where it is a system call), so ops run in batches: the first op
 * of a batch is timed on its own (a sample: p50, p99, max come from these,
 * each including one clock read), the batch as a whole gives the mean.
 * A thread doubles its batch, up to --max-batch, while a batch takes less
 * than 200 clock reads, so clock reads cost at most about 1% of mean_ns;
 * ops slower than that are each timed and each a sample.
 *
 * mean_ns is the mean per-op latency seen by one thread (its run time over
 * its ops); ops_per_s and mb_per_s are totals over all threads and the
 * wall time from the first thread's start to the last thread's end;
 * clock_ns is the measured cost of one clock read on this machine.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

enum bench_op { OP_READ, OP_WRITE, OP_POLL, OP_FIONREAD };

static const char *const op_names[] = {
	[OP_READ] = "read",
	[OP_WRITE] = "write",
	[OP_POLL] = "poll",
	[OP_FIONREAD] = "fionread",
};

#define WARMUP_OPS 16
#define CLOCK_READS_PER_BATCH 200
#define HIST_SUB_BITS 4
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64 * HIST_SUB)

struct bench_config {
	const char *node;
	const char *label;
	enum bench_op op;
	size_t size;
	unsigned int threads;
	uint64_t ops;		/* total over all threads; 0: run for seconds */
	double seconds;
	uint64_t max_batch;	/* ops per clock read at most */
	double clock_ns;	/* the cost of one clock read */
	bool json;
	bool allow_errors;	/* count failed ops as done instead of stopping */
};

struct bench_thread {
	pthread_t tid;
	const struct bench_config *cfg;
	pthread_barrier_t *barrier;
	uint64_t quota;		/* ops for this thread; 0: run for seconds */
	int fd;
	char *buf;
	int setup_errno;

	uint64_t start_ns;
	uint64_t end_ns;
	uint64_t ops;
	uint64_t bytes;
	uint64_t errors;
	int first_errno;
	uint64_t samples;
	uint64_t sample_max_ns;
	uint64_t hist[HIST_BUCKETS];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned int hist_bucket(uint64_t v)
{
	unsigned int msb;

	if (v < HIST_SUB)
		return (unsigned int)v;
	msb = 63 - (unsigned int)__builtin_clzll(v);
	return ((msb - HIST_SUB_BITS + 1) << HIST_SUB_BITS) +
	       (unsigned int)((v >> (msb - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* The middle of a bucket's value range. */
static uint64_t hist_value(unsigned int b)
{
	unsigned int shift;

	if (b < HIST_SUB)
		return b;
	shift = (b >> HIST_SUB_BITS) - 1;
	return ((uint64_t)(HIST_SUB + (b & (HIST_SUB - 1))) << shift) +
	       ((1ull << shift) >> 1);
}

/* One op: bytes moved (0 for poll and ioctl) or -errno; -ENODATA is end of file. */
static ssize_t do_op(const struct bench_config *cfg, int fd, char *buf)
{
	struct pollfd pfd;
	ssize_t n;
	int nread;

	switch (cfg->op) {
	case OP_READ:
		n = read(fd, buf, cfg->size);
		if (n == 0 && cfg->size)
			return -ENODATA;
		return n < 0 ? -errno : n;
	case OP_WRITE:
		n = write(fd, buf, cfg->size);
		return n < 0 ? -errno : n;
	case OP_POLL:
		pfd.fd = fd;
		pfd.events = POLLIN | POLLOUT;
		pfd.revents = 0;
		if (poll(&pfd, 1, 0) < 0)
			return -errno;
		return (pfd.revents & POLLNVAL) ? -EBADF : 0;
	case OP_FIONREAD:
		return ioctl(fd, FIONREAD, &nread) < 0 ? -errno : 0;
	}
	return -EINVAL;
}

/* Accounts one op's result; false when the thread must stop. */
static bool account(struct bench_thread *t, ssize_t r)
{
	t->ops++;
	if (r >= 0) {
		t->bytes += (uint64_t)r;
		return true;
	}
	if (!t->errors++)
		t->first_errno = (int)-r;
	return t->cfg->allow_errors;
}

static void *bench_thread_main(void *arg)
{
	struct bench_thread *t = arg;
	const struct bench_config *cfg = t->cfg;
	const uint64_t short_batch_ns =
		(uint64_t)(cfg->clock_ns * CLOCK_READS_PER_BATCH);
	uint64_t deadline, batch = 1, n, t0, t1, te;
	bool ok;
	ssize_t r;
	int i;

	for (i = 0; i < WARMUP_OPS && !t->setup_errno; i++) {
		r = do_op(cfg, t->fd, t->buf);
		if (r < 0 && !cfg->allow_errors)
			t->setup_errno = (int)-r;
	}
	pthread_barrier_wait(t->barrier);
	if (t->setup_errno)
		return NULL;

	t0 = now_ns();
	t->start_ns = t0;
	deadline = t0 + (uint64_t)(cfg->seconds * 1e9);
	for (;;) {
		if (t->quota && batch > t->quota - t->ops)
			batch = t->quota - t->ops;

		/* The batch's first op is the sample. */
		r = do_op(cfg, t->fd, t->buf);
		t1 = now_ns();
		t->samples++;
		t->hist[hist_bucket(t1 - t0)]++;
		if (t1 - t0 > t->sample_max_ns)
			t->sample_max_ns = t1 - t0;
		ok = account(t, r);
		for (n = 1; n < batch && ok; n++)
			ok = account(t, do_op(cfg, t->fd, t->buf));
		te = batch > 1 ? now_ns() : t1;

		if (!ok || (t->quota ? t->ops >= t->quota : te >= deadline))
			break;
		if (te - t0 < short_batch_ns && batch < cfg->max_batch)
			batch *= 2;
		t0 = te;
	}
	t->end_ns = te;
	return NULL;
}

/* The cost of one clock read, measured for at most 100000 reads or 10 ms. */
static double clock_cost_ns(void)
{
	const uint64_t budget_ns = 10000000;
	uint64_t start, end, n = 0;
	int i;

	start = now_ns();
	do {
		for (i = 0; i < 99; i++)
			now_ns();
		end = now_ns();
		n += 100;
	} while (end - start < budget_ns && n < 100000);
	return (double)(end - start) / (double)n;
}

static uint64_t percentile(const uint64_t *hist, uint64_t total, double p)
{
	uint64_t want = (uint64_t)(p * (double)total), seen = 0;
	unsigned int b;

	if (want >= total)
		want = total - 1;
	for (b = 0; b < HIST_BUCKETS; b++) {
		seen += hist[b];
		if (seen > want)
			return hist_value(b);
	}
	return 0;
}

static const char *errno_name(int err)
{
	if (err == ENODATA)
		return "EOF";
	if (!err)
		return "0";
	return strerrorname_np(err) ? strerrorname_np(err) : "?";
}

static void print_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void report(const struct bench_config *cfg, struct bench_thread *threads)
{
	static uint64_t hist[HIST_BUCKETS];
	uint64_t ops = 0, bytes = 0, errors = 0, busy_ns = 0, samples = 0;
	uint64_t sample_max = 0, p50 = 0, p99 = 0;
	uint64_t start = UINT64_MAX, end = 0;
	double secs, ops_s, mb_s, mean;
	int first_errno = 0;
	unsigned int i, b;

	for (i = 0; i < cfg->threads; i++) {
		struct bench_thread *t = &threads[i];

		ops += t->ops;
		bytes += t->bytes;
		errors += t->errors;
		busy_ns += t->end_ns - t->start_ns;
		samples += t->samples;
		if (t->sample_max_ns > sample_max)
			sample_max = t->sample_max_ns;
		if (t->errors && !first_errno)
			first_errno = t->first_errno;
		if (t->start_ns < start)
			start = t->start_ns;
		if (t->end_ns > end)
			end = t->end_ns;
		for (b = 0; b < HIST_BUCKETS; b++)
			hist[b] += t->hist[b];
	}
	secs = ops && end > start ? (double)(end - start) / 1e9 : 0;
	ops_s = secs > 0 ? (double)ops / secs : 0;
	mb_s = secs > 0 ? (double)bytes / secs / 1e6 : 0;
	mean = ops ? (double)busy_ns / (double)ops : 0;
	if (samples) {
		p50 = percentile(hist, samples, 0.50);
		p99 = percentile(hist, samples, 0.99);
	}

	if (cfg->json) {
		printf("{\"label\":");
		print_json_string(cfg->label);
		printf(",\"op\":\"%s\",\"size\":%zu,\"threads\":%u,"
		       "\"ops\":%" PRIu64 ",\"seconds\":%.6f,"
		       "\"ops_per_s\":%.1f,\"mb_per_s\":%.3f,\"mean_ns\":%.1f,"
		       "\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64
		       ",\"max_ns\":%" PRIu64 ",\"samples\":%" PRIu64
		       ",\"clock_ns\":%.1f,\"errors\":%" PRIu64
		       ",\"errno\":\"%s\",\"node\":",
		       op_names[cfg->op], cfg->size, cfg->threads, ops, secs,
		       ops_s, mb_s, mean, p50, p99, sample_max, samples,
		       cfg->clock_ns, errors, errno_name(first_errno));
		print_json_string(cfg->node);
		printf("}\n");
	} else {
		printf("label=%s op=%s size=%zu threads=%u ops=%" PRIu64
		       " seconds=%.6f ops_per_s=%.1f mb_per_s=%.3f mean_ns=%.1f"
		       " p50_ns=%" PRIu64 " p99_ns=%" PRIu64 " max_ns=%" PRIu64
		       " samples=%" PRIu64 " clock_ns=%.1f errors=%" PRIu64
		       " errno=%s node=%s\n",
		       cfg->label, op_names[cfg->op], cfg->size, cfg->threads,
		       ops, secs, ops_s, mb_s, mean, p50, p99, sample_max,
		       samples, cfg->clock_ns, errors, errno_name(first_errno),
		       cfg->node);
	}
	fflush(stdout);
}

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s --node PATH --op read|write|poll|fionread [--size BYTES]\n"
		"          [--threads N] (--ops COUNT | --seconds S) [--label TEXT]\n"
		"          [--json] [--allow-errors] [--max-batch N]\n"
		"  --size       bytes per read/write (suffix k/K = KiB, m/M = MiB; default 1)\n"
		"  --threads    threads, each with its own open file (default 1)\n"
		"  --ops        total ops over all threads\n"
		"  --seconds    run time per thread (default 1 if --ops is not given)\n"
		"  --allow-errors  count failing ops (e.g. ENOTTY) instead of stopping\n"
		"  --max-batch  most ops per clock read (default 1024; 1 times every op)\n",
		prog);
}

static bool parse_u64(const char *s, uint64_t *out, bool size_suffix)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return false;
	if (size_suffix && (*end == 'k' || *end == 'K')) {
		v <<= 10;
		end++;
	} else if (size_suffix && (*end == 'm' || *end == 'M')) {
		v <<= 20;
		end++;
	}
	if (*end)
		return false;
	*out = v;
	return true;
}

static int parse_args(int argc, char *argv[], struct bench_config *cfg)
{
	static const struct option opts[] = {
		{ "node", required_argument, NULL, 'n' },
		{ "op", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 't' },
		{ "ops", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "label", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "allow-errors", no_argument, NULL, 'e' },
		{ "max-batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	char *end;
	int c;
	unsigned int i;
	bool op_set = false;

	*cfg = (struct bench_config){ .size = 1, .threads = 1, .max_batch = 1024 };
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			cfg->node = optarg;
			break;
		case 'o':
			for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
				if (!strcmp(optarg, op_names[i]))
					break;
			if (i == sizeof(op_names) / sizeof(op_names[0])) {
				fprintf(stderr, "unknown op '%s'\n", optarg);
				return 2;
			}
			cfg->op = (enum bench_op)i;
			op_set = true;
			break;
		case 's':
			if (!parse_u64(optarg, &v, true) || v > (1u << 30)) {
				fprintf(stderr, "bad --size '%s'\n", optarg);
				return 2;
			}
			cfg->size = v;
			break;
		case 't':
			if (!parse_u64(optarg, &v, false) || !v || v > 1024) {
				fprintf(stderr, "bad --threads '%s'\n", optarg);
				return 2;
			}
			cfg->threads = (unsigned int)v;
			break;
		case 'c':
			if (!parse_u64(optarg, &v, false) || !v) {
				fprintf(stderr, "bad --ops '%s'\n", optarg);
				return 2;
			}
			cfg->ops = v;
			break;
		case 'S':
			cfg->seconds = strtod(optarg, &end);
			if (*end || end == optarg || !(cfg->seconds > 0) ||
			    cfg->seconds > 1e6) {
				fprintf(stderr, "bad --seconds '%s'\n", optarg);
				return 2;
			}
			break;
		case 'l':
			cfg->label = optarg;
			break;
		case 'j':
			cfg->json = true;
			break;
		case 'e':
			cfg->allow_errors = true;
			break;
		case 'b':
			if (!parse_u64(optarg, &v, false) || !v) {
				fprintf(stderr, "bad --max-batch '%s'\n", optarg);
				return 2;
			}
			cfg->max_batch = v;
			break;
		case 'h':
			usage(stdout, argv[0]);
			exit(0);
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind != argc || !cfg->node || !op_set) {
		usage(stderr, argv[0]);
		return 2;
	}
	if (cfg->ops && cfg->seconds) {
		fprintf(stderr, "--ops and --seconds are exclusive\n");
		return 2;
	}
	if (!cfg->ops && !cfg->seconds)
		cfg->seconds = 1;
	if (cfg->ops && cfg->ops < cfg->threads) {
		fprintf(stderr, "--ops must be at least --threads\n");
		return 2;
	}
	if (cfg->op == OP_POLL || cfg->op == OP_FIONREAD)
		cfg->size = 0;
	if (!cfg->label)
		cfg->label = cfg->node;
	return 0;
}

int main(int argc, char *argv[])
{
	struct bench_config cfg;
	struct bench_thread *threads;
	pthread_barrier_t barrier;
	unsigned int i, started = 0;
	int ret, err = 0;

	ret = parse_args(argc, argv, &cfg);
	if (ret)
		return ret;

	threads = calloc(cfg.threads, sizeof(*threads));
	if (!threads) {
		perror("calloc");
		return 1;
	}
	for (i = 0; i < cfg.threads; i++) {
		struct bench_thread *t = &threads[i];

		t->cfg = &cfg;
		t->barrier = &barrier;
		if (cfg.ops)
			t->quota = cfg.ops / cfg.threads +
				   (i < cfg.ops % cfg.threads);
		t->fd = open(cfg.node, O_RDWR | O_CLOEXEC);
		if (t->fd < 0) {
			fprintf(stderr, "open %s: %s\n", cfg.node,
				strerror(errno));
			return 1;
		}
		/* Page-aligned and touched, so no fault lands in a timed op. */
		if (cfg.size) {
			if (posix_memalign((void **)&t->buf, 4096, cfg.size)) {
				perror("posix_memalign");
				return 1;
			}
			memset(t->buf, 0, cfg.size);
		}
	}

	cfg.clock_ns = clock_cost_ns();
	pthread_barrier_init(&barrier, NULL, cfg.threads);
	for (i = 0; i < cfg.threads; i++) {
		ret = pthread_create(&threads[i].tid, NULL, bench_thread_main,
				     &threads[i]);
		if (ret) {
			fprintf(stderr, "pthread_create: %s\n", strerror(ret));
			return 1;
		}
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(threads[i].tid, NULL);

	for (i = 0; i < cfg.threads; i++) {
		if (threads[i].setup_errno && !err) {
			err = threads[i].setup_errno;
			fprintf(stderr, "%s %s on %s: warm-up failed: %s\n",
				cfg.label, op_names[cfg.op], cfg.node,
				err == ENODATA ? "end of file" : strerror(err));
		}
		close(threads[i].fd);
		free(threads[i].buf);
	}
	if (err) {
		free(threads);
		return 1;
	}

	report(&cfg, threads);
	for (i = 0; i < cfg.threads; i++)
		if (threads[i].errors && !cfg.allow_errors)
			err = 1;
	free(threads);
	return err;
}
