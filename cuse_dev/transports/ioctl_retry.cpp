// SPDX-License-Identifier: MIT
// decodeIoctlRetry: the retry list of an IOCTL_RETRY completion, bounded by DEVEMU_IOCTL_MAX_IOV and by its slot.
#include "ioctl_retry.h"

#include "devemu/uapi/devemu.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace devemu {

int decodeIoctlRetry(std::span<const std::byte> slot, IoctlRetryList &list)
{
	devemu_ioctl_retry hdr;
	if (slot.size() < sizeof(hdr))
		return -EINVAL;
	std::memcpy(&hdr, slot.data(), sizeof(hdr));
	size_t count = size_t(hdr.in_count) + hdr.out_count;
	if (count > DEVEMU_IOCTL_MAX_IOV || count > (slot.size() - sizeof(hdr)) / sizeof(devemu_iovec))
		return -EINVAL;
	list.inCount = hdr.in_count;
	list.outCount = hdr.out_count;
	list.iov.resize(count);
	const std::byte *p = slot.data() + sizeof(hdr);
	for (auto &v : list.iov) {
		devemu_iovec d;
		std::memcpy(&d, p, sizeof(d));
		p += sizeof(d);
		v.iov_base = reinterpret_cast<void *>(static_cast<uintptr_t>(d.base));
		v.iov_len = static_cast<size_t>(d.len);
	}
	return 0;
}

} // namespace devemu
