// SPDX-License-Identifier: MIT
/*
 * abi_dump: prints the devemu ABI as the uapi header defines it, as JSON, for
 * the Python test library (tests/lib/devemu_testlib/abi.py): constants, ioctl
 * numbers, struct sizes and field offsets (offsetof, element type and count
 * derived from the declarations), and the window layout of a geometry computed
 * by the header's devemu_window_* functions. The Python tests read these
 * instead of spelling offsets and formats out again.
 *
 *   abi_dump                   everything, with the layout of the default geometry
 *   abi_dump layout DEPTH SLOT the window layout for that queue depth and slot size
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <devemu/uapi/devemu.h>

#include "kshim_test.h"

/* The element type of a member (arrays decay to a pointer to their first element). */
#define ELEM_TYPE(m)                                                                                       \
	_Generic((m), __u8: "u8", __u16: "u16", __u32: "u32", __u64: "u64", __s32: "s32", __s64: "s64",   \
		 char *: "char", __u8 *: "u8", __u16 *: "u16", __u32 *: "u32", __u64 *: "u64", __s32 *: "s32")
#define ELEM_SIZE(m)                                                                                       \
	_Generic((m), __u8: 1, __u16: 2, __u32: 4, __u64: 8, __s32: 4, __s64: 8, char *: 1, __u8 *: 1,     \
		 __u16 *: 2, __u32 *: 4, __u64 *: 8, __s32 *: 4)

static const char *sep;

static void begin_struct(const char *name, size_t size)
{
	printf("%s\n    \"%s\": {\"size\": %zu, \"fields\": {", sep, name, size);
	sep = "";
}

static void field(const char *name, size_t offset, size_t size, const char *type, size_t elem)
{
	printf("%s\n      \"%s\": {\"offset\": %zu, \"size\": %zu, \"type\": \"%s\", \"count\": %zu}", sep, name,
	       offset, size, type, size / elem);
	sep = ",";
}

static void end_struct(void)
{
	printf("}}");
	sep = ",";
}

#define FIELD(s, m) field(#m, offsetof(struct s, m), sizeof(((struct s *)0)->m), ELEM_TYPE(((struct s *)0)->m), \
			  ELEM_SIZE(((struct s *)0)->m))

static void entry(const char *name, unsigned long long value)
{
	printf("%s\n    \"%s\": %llu", sep, name, value);
	sep = ",";
}
#define CONST(c) entry(#c, (unsigned long long)(c))

static void print_layout(__u32 depth, __u32 slot)
{
	printf("{\"queue_depth\": %u, \"slot_size\": %u, \"sq_offset\": %llu, \"cq_offset\": %llu, "
	       "\"data_offset\": %llu, \"window_size\": %llu}",
	       depth, slot, (unsigned long long)devemu_window_sq_offset(),
	       (unsigned long long)devemu_window_cq_offset(depth), (unsigned long long)devemu_window_data_offset(depth),
	       (unsigned long long)devemu_window_size(depth, slot));
}

static int usage(void)
{
	fprintf(stderr, "usage: abi_dump [layout DEPTH SLOT]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "layout")) {
		char *end1, *end2;
		unsigned long depth = strtoul(argv[2], &end1, 0), slot = strtoul(argv[3], &end2, 0);

		if (*end1 || *end2 || !*argv[2] || !*argv[3] || depth > 0xffffffffUL || slot > 0xffffffffUL)
			return usage();
		print_layout((__u32)depth, (__u32)slot);
		printf("\n");
		return 0;
	}
	if (argc != 1)
		return usage();

	printf("{\n  \"constants\": {");
	sep = "";
	CONST(DEVEMU_MAGIC);
	CONST(DEVEMU_ABI_VERSION);
	CONST(DEVEMU_WINDOW_PAGE);
	CONST(DEVEMU_MAX_FILES);
	CONST(DEVEMU_MAX_QUEUE_DEPTH);
	CONST(DEVEMU_MAX_SLOT_SIZE);
	CONST(DEVEMU_DEVICE_NAME_MAX);
	CONST(DEVEMU_DEFAULT_QUEUE_DEPTH);
	CONST(DEVEMU_DEFAULT_SLOT_SIZE);
	CONST(DEVEMU_RING_NEED_KICK);
	CONST(DEVEMU_KSHIM_FEATURES);
	CONST(DEVEMU_F_STREAM);
	CONST(DEVEMU_F_CALLER_CAPS);
	CONST(DEVEMU_SQE_F_CAPS);
	CONST(DEVEMU_MIN_FIFO_SIZE);
	CONST(DEVEMU_MAX_FIFO_SIZE);
	CONST(DEVEMU_F_FILE_STREAM);
	CONST(DEVEMU_MAX_FILE_FIFOS);
	CONST(DEVEMU_MAX_FILE_FIFO_SIZE);
	CONST(KSHIM_TEST_RECORD);
	CONST(KSHIM_TEST_REV_MAX);
	CONST(DEVEMU_KSHIM_ADD_USER);
	CONST(DEVEMU_KSHIM_USER_WINDOW_MAX);
	printf("\n  },\n  \"strings\": {\n    \"DEVEMU_KSHIM_CONTROL_NAME\": \"%s\",\n    \"DEVEMU_KSHIM_USER_DIR\": \"%s\"\n  },",
	       DEVEMU_KSHIM_CONTROL_NAME, DEVEMU_KSHIM_USER_DIR);

	printf("\n  \"ioctls\": {");
	sep = "";
	CONST(DEVEMU_IOC_COUNTERS);
	CONST(DEVEMU_IOC_NREAD);
	CONST(DEVEMU_KSHIM_IOC_ADD);
	CONST(DEVEMU_KSHIM_IOC_ATTACH);
	CONST(DEVEMU_KSHIM_IOC_REMOVE);
	CONST(KSHIM_TEST_IOC_REVERSE);
	CONST(KSHIM_TEST_IOC_PUSH);
	CONST(KSHIM_TEST_IOC_TAKE);
	CONST(KSHIM_TEST_IOC_DIVERT);
	CONST(KSHIM_TEST_IOC_CALLER);
	printf("\n  },");

	printf("\n  \"structs\": {");
	sep = "";
	begin_struct("devemu_regs", sizeof(struct devemu_regs));
	FIELD(devemu_regs, magic);
	FIELD(devemu_regs, abi_version);
	FIELD(devemu_regs, device_id);
	FIELD(devemu_regs, queue_depth);
	FIELD(devemu_regs, slot_size);
	FIELD(devemu_regs, max_files);
	FIELD(devemu_regs, window_size);
	FIELD(devemu_regs, sq_offset);
	FIELD(devemu_regs, cq_offset);
	FIELD(devemu_regs, data_offset);
	FIELD(devemu_regs, features_offered);
	FIELD(devemu_regs, features_accepted);
	FIELD(devemu_regs, status);
	FIELD(devemu_regs, attach_epoch);
	FIELD(devemu_regs, name);
	FIELD(devemu_regs, rx_fifo_size);
	FIELD(devemu_regs, tx_fifo_size);
	FIELD(devemu_regs, fifo_offset);
	FIELD(devemu_regs, file_fifo_count);
	FIELD(devemu_regs, file_fifo_size);
	FIELD(devemu_regs, file_fifo_offset);
	end_struct();
	begin_struct("devemu_ring", sizeof(struct devemu_ring));
	FIELD(devemu_ring, head);
	FIELD(devemu_ring, tail);
	FIELD(devemu_ring, flags);
	end_struct();
	begin_struct("devemu_counters", sizeof(struct devemu_counters));
	FIELD(devemu_counters, bytes_in);
	FIELD(devemu_counters, bytes_out);
	FIELD(devemu_counters, opens);
	FIELD(devemu_counters, dropped);
	end_struct();
	begin_struct("devemu_kshim_add", sizeof(struct devemu_kshim_add));
	FIELD(devemu_kshim_add, name);
	FIELD(devemu_kshim_add, mode);
	FIELD(devemu_kshim_add, uid);
	FIELD(devemu_kshim_add, gid);
	FIELD(devemu_kshim_add, queue_depth);
	FIELD(devemu_kshim_add, slot_size);
	FIELD(devemu_kshim_add, doorbell_fd);
	FIELD(devemu_kshim_add, irq_fd);
	FIELD(devemu_kshim_add, flags);
	FIELD(devemu_kshim_add, features);
	FIELD(devemu_kshim_add, rx_fifo_size);
	FIELD(devemu_kshim_add, tx_fifo_size);
	FIELD(devemu_kshim_add, stream_capacity);
	FIELD(devemu_kshim_add, file_fifo_count);
	FIELD(devemu_kshim_add, file_fifo_size);
	FIELD(devemu_kshim_add, reserved);
	end_struct();
	begin_struct("kshim_test_rev", sizeof(struct kshim_test_rev));
	FIELD(kshim_test_rev, ptr);
	FIELD(kshim_test_rev, len);
	FIELD(kshim_test_rev, pad);
	end_struct();
	printf("\n  },\n  \"layout\": ");
	print_layout(DEVEMU_DEFAULT_QUEUE_DEPTH, DEVEMU_DEFAULT_SLOT_SIZE);
	printf("\n}\n");
	return 0;
}
