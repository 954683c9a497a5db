// SPDX-License-Identifier: MIT
/*
 * abi_client: the evdev and i2c-dev structures that hold pointers or longs,
 * driven from C so that the same source runs as a 64-bit and, built with
 * -m32 (abi_client32), as a 32-bit (compat) task. It prints one line per
 * check, "name=value" (errors by their errno name), for tests/devices/test_compat.py:
 *
 *   abi_client evdev /dev/NODE   event size, a written key read back, FIONREAD, EVIOCSFF sizes
 *   abi_client i2c /dev/NODE     I2C_FUNCS (and what it wrote), SMBus and I2C_RDWR against an EEPROM at 0x50
 *   abi_client events /dev/NODE N   EVIOCGVERSION, then reads N input events (blocking), one line each with its time stamp
 *
 * It uses the caller's own struct layouts from the system headers: a
 * 32-bit build has 16-byte input_events, 12-byte i2c_msgs and a 4-byte
 * unsigned long, exactly what a 32-bit program's driver must decode.
 */
#define _GNU_SOURCE /* strerrorname_np */
#include <errno.h>
#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <linux/input.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int report_errno(const char *name, int ret)
{
	printf("%s=%s\n", name, ret < 0 ? strerrorname_np(errno) : "ok");
	return ret;
}

static int evdev(const char *path)
{
	int fd = open(path, O_RDWR | O_NONBLOCK);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	printf("sizeof_input_event=%zu\n", sizeof(struct input_event));
	int version = 0;
	report_errno("EVIOCGVERSION", ioctl(fd, EVIOCGVERSION, &version));
	printf("version=0x%x\n", version);

	/* Write a key press and its report; read them back (the input core passes injected events to readers). */
	struct input_event out[2];
	memset(out, 0, sizeof(out));
	out[0].type = EV_KEY;
	out[0].code = KEY_A;
	out[0].value = 1;
	out[1].type = EV_SYN;
	out[1].code = SYN_REPORT;
	ssize_t n = write(fd, out, sizeof(out));
	printf("write=%zd\n", n);
	int readable = -1;
	report_errno("FIONREAD", ioctl(fd, FIONREAD, &readable));
	printf("readable=%d\n", readable);
	struct input_event in[8];
	memset(in, 0, sizeof(in));
	n = read(fd, in, sizeof(in));
	if (n < 0)
		printf("read=%s\n", strerrorname_np(errno));
	else
		printf("read=%zd\n", n);
	time_t now = time(NULL);
	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(in[0]); i++) {
		long age = (long)now - (long)in[i].input_event_sec;
		printf("event%zd=%u %u %d age_ok=%d usec_ok=%d\n", i, in[i].type, in[i].code, in[i].value,
		       age >= -1 && age <= 60, in[i].input_event_usec < 1000000);
	}
	/* A read smaller than one event of the caller's size is EINVAL. */
	n = read(fd, in, sizeof(in[0]) - 1);
	printf("short_read=%s\n", n < 0 ? strerrorname_np(errno) : "accepted");

	/*
	 * EVIOCSFF is size-encoded with the caller's struct ff_effect (44 bytes
	 * for a 32-bit task, 48 for a 64-bit one): the right size reaches the
	 * device (no force feedback: ENOSYS, which the kernel's fuse turns into
	 * ENOTTY on CUSE and FUSE nodes), the other one is EFAULT.
	 */
	struct ff_effect effect;
	memset(&effect, 0, sizeof(effect));
	effect.type = FF_RUMBLE;
	effect.id = -1;
	printf("sizeof_ff_effect=%zu\n", sizeof(effect));
	report_errno("EVIOCSFF", ioctl(fd, EVIOCSFF, &effect));
	unsigned other = sizeof(effect) == 44 ? 48 : 44;
	char big[64];
	memset(big, 0, sizeof(big));
	report_errno("EVIOCSFF_other_size", ioctl(fd, _IOC(_IOC_WRITE, 'E', 0x80, other), big));

	/* Release the key, so that the device is as it was. */
	out[0].value = 0;
	printf("release=%zd\n", write(fd, out, sizeof(out)));
	close(fd);
	return 0;
}

static int i2c(const char *path)
{
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	printf("sizeof_long=%zu sizeof_i2c_msg=%zu\n", sizeof(long), sizeof(struct i2c_msg));

	/* I2C_FUNCS stores an unsigned long: the word after it must stay as it was. */
	struct {
		unsigned long funcs;
		uint32_t guard;
	} f = { 0, 0xa5a5a5a5u };
	report_errno("I2C_FUNCS", ioctl(fd, I2C_FUNCS, &f.funcs));
	printf("funcs_i2c=%d guard=0x%08x\n", !!(f.funcs & I2C_FUNC_I2C), f.guard);

	report_errno("I2C_SLAVE", ioctl(fd, I2C_SLAVE, 0x50));
	/* SMBus write byte data: offset 0x10 <- 0x5a, 0x11 <- 0xc3. */
	union i2c_smbus_data data;
	struct i2c_smbus_ioctl_data args = { I2C_SMBUS_WRITE, 0x10, I2C_SMBUS_BYTE_DATA, &data };
	data.byte = 0x5a;
	report_errno("SMBUS_WRITE_BYTE_DATA", ioctl(fd, I2C_SMBUS, &args));
	args.command = 0x11;
	data.byte = 0xc3;
	ioctl(fd, I2C_SMBUS, &args);
	usleep(20000); /* the EEPROM's write cycle */
	args.read_write = I2C_SMBUS_READ;
	args.command = 0x10;
	data.byte = 0;
	report_errno("SMBUS_READ_BYTE_DATA", ioctl(fd, I2C_SMBUS, &args));
	printf("smbus_byte=0x%02x\n", data.byte);

	/* I2C_RDWR: write the offset, read two bytes, in one transfer. */
	uint8_t offset = 0x10, got[2] = { 0, 0 };
	struct i2c_msg msgs[2] = {
		{ .addr = 0x50, .flags = 0, .len = 1, .buf = &offset },
		{ .addr = 0x50, .flags = I2C_M_RD, .len = 2, .buf = got },
	};
	struct i2c_rdwr_ioctl_data rdwr = { msgs, 2 };
	int ret = ioctl(fd, I2C_RDWR, &rdwr);
	printf("I2C_RDWR=%d rdwr_bytes=%02x%02x\n", ret, got[0], got[1]);
	close(fd);
	return 0;
}

/* Reads count events in the caller's layout, whatever the reads return at a time. */
static int events(const char *path, int count)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	printf("sizeof_input_event=%zu\n", sizeof(struct input_event));
	/* As evdev clients do first (evtest, libevdev); on CUSE it is also what tells the daemon a 32-bit task calls. */
	int version = 0;
	report_errno("EVIOCGVERSION", ioctl(fd, EVIOCGVERSION, &version));
	for (int i = 0; i < count;) {
		struct input_event in[8];
		ssize_t n = read(fd, in, sizeof(in));
		if (n <= 0 || n % sizeof(in[0])) {
			printf("read=%zd errno=%s\n", n, n < 0 ? strerrorname_np(errno) : "-");
			return 1;
		}
		for (size_t k = 0; k < n / sizeof(in[0]) && i < count; k++, i++)
			printf("event%d=%u %u %d time=%lld.%06ld\n", i, in[k].type, in[k].code, in[k].value,
			       (long long)in[k].input_event_sec, (long)in[k].input_event_usec);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "evdev"))
		return evdev(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "i2c"))
		return i2c(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "events"))
		return events(argv[2], atoi(argv[3]));
	fprintf(stderr, "usage: abi_client evdev|i2c /dev/NODE, abi_client events /dev/NODE N\n");
	return 2;
}
