// SPDX-License-Identifier: MIT
// Fuzz target: a driver decoding the ioctl retry list a hostile core left in a completion's data slot.
#include "transports/ioctl_retry.h"

#include "devemu/uapi/devemu.h"

#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The slot is exactly the input: a list that runs past it must be refused, not read. */
	std::vector<std::byte> slot(reinterpret_cast<const std::byte *>(data),
				    reinterpret_cast<const std::byte *>(data) + size);
	devemu::IoctlRetryList list;
	if (devemu::decodeIoctlRetry(slot, list) == 0) {
		if (list.iov.size() != list.inCount + list.outCount || list.iov.size() > DEVEMU_IOCTL_MAX_IOV ||
		    sizeof(devemu_ioctl_retry) + list.iov.size() * sizeof(devemu_iovec) > size)
			abort();
	}
	return 0;
}
