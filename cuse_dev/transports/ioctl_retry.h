// SPDX-License-Identifier: MIT
// decodeIoctlRetry: the caller memory ranges an IOCTL_RETRY completion asks the driver to fetch, checked against its slot.
#pragma once

#include <cstddef>
#include <span>
#include <sys/uio.h>
#include <vector>

namespace devemu {

struct IoctlRetryList {
	std::vector<iovec> iov; /* the inCount input ranges, then the output ranges */
	size_t inCount = 0;
	size_t outCount = 0;
};

/*
 * Decodes the struct devemu_ioctl_retry a core left in a completion's data slot. The slot is
 * written by the core, which a driver does not trust: 0, or -EINVAL when the slot is shorter than
 * the header, the list is longer than DEVEMU_IOCTL_MAX_IOV or does not fit in the slot.
 */
int decodeIoctlRetry(std::span<const std::byte> slot, IoctlRetryList &list);

} // namespace devemu
