// SPDX-License-Identifier: MIT
// I2C_RDWR and I2C_SMBUS flattened: gathered from the caller, performed on a real node, scattered back.
#include "ioctl_i2c.h"

#include "i2c/i2c_bus.h"
#include "i2c/i2c_user.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace devemu::trace {

namespace {

void put16(std::vector<uint8_t> &out, uint16_t v)
{
	out.push_back(static_cast<uint8_t>(v));
	out.push_back(static_cast<uint8_t>(v >> 8));
}

uint16_t get16(const uint8_t *p)
{
	return static_cast<uint16_t>(p[0] | p[1] << 8);
}

constexpr unsigned kMaxMessage = 8192; /* i2c-dev's limit for one message */

int rdwrGather(IoctlCall &call, std::vector<uint8_t> &in, std::vector<UserRange> &dest)
{
	auto hdr = rdwrArg(call);
	if (!hdr)
		return 1;
	if (!hdr->msgs || hdr->nmsgs == 0 || hdr->nmsgs > I2C_RDWR_IOCTL_MAX_MSGS)
		return -EINVAL;
	auto msgs = rdwrMessages(call, hdr->msgs, hdr->nmsgs);
	if (!msgs)
		return 1;
	bool missing = false;
	in.clear();
	dest.clear();
	for (const UserI2cMsg &m : *msgs) {
		if (m.len > kMaxMessage || (m.flags & I2C_M_RECV_LEN))
			return -EINVAL;
		put16(in, m.addr);
		put16(in, m.flags);
		put16(in, m.len);
		if (!m.len)
			continue;
		if (m.flags & I2C_M_RD) {
			dest.push_back({ m.buf, m.len });
			if (!call.canWriteUser(m.buf, m.len)) {
				call.writeUser(m.buf, std::vector<std::byte>(m.len)); /* names the range */
				missing = true;
			}
			continue;
		}
		auto data = call.readUser(m.buf, m.len);
		if (!data) {
			missing = true;
			continue;
		}
		auto p = reinterpret_cast<const uint8_t *>(data->data());
		in.insert(in.end(), p, p + m.len);
	}
	return missing ? 1 : 0;
}

int rdwrPerform(int fd, uint32_t request, const std::vector<uint8_t> &in, std::vector<uint8_t> &out)
{
	std::vector<struct i2c_msg> msgs;
	std::vector<std::vector<uint8_t>> bufs;
	for (size_t i = 0; i + 6 <= in.size();) {
		struct i2c_msg m {};
		m.addr = get16(&in[i]);
		m.flags = get16(&in[i + 2]);
		m.len = get16(&in[i + 4]);
		i += 6;
		std::vector<uint8_t> buf(m.len);
		if (!(m.flags & I2C_M_RD)) {
			if (in.size() - i < m.len)
				return -EINVAL;
			std::memcpy(buf.data(), &in[i], m.len);
			i += m.len;
		}
		bufs.push_back(std::move(buf));
		msgs.push_back(m);
	}
	for (size_t i = 0; i < msgs.size(); i++)
		msgs[i].buf = bufs[i].data();
	struct i2c_rdwr_ioctl_data data {
		msgs.data(), static_cast<uint32_t>(msgs.size())
	};
	int ret = ::ioctl(fd, request, &data);
	if (ret < 0)
		return -errno;
	out.clear();
	for (size_t i = 0; i < msgs.size(); i++)
		if (msgs[i].flags & I2C_M_RD)
			out.insert(out.end(), bufs[i].begin(), bufs[i].end());
	return ret;
}

int smbusGather(IoctlCall &call, std::vector<uint8_t> &in, std::vector<UserRange> &dest)
{
	auto a = smbusArg(call);
	if (!a)
		return 1;
	if (a->readWrite != I2C_SMBUS_READ && a->readWrite != I2C_SMBUS_WRITE)
		return -EINVAL;
	auto use = smbusDataUse(a->size, a->readWrite == I2C_SMBUS_READ);
	if (!use || (use->size && !a->data))
		return -EINVAL;
	in = { a->readWrite, a->command };
	put16(in, static_cast<uint16_t>(a->size));
	put16(in, static_cast<uint16_t>(a->size >> 16));
	bool missing = false;
	dest.clear();
	if (use->answers)
		dest.push_back({ a->data, use->size });
	if (use->answers && !call.canWriteUser(a->data, use->size)) {
		call.writeUser(a->data, std::vector<std::byte>(use->size));
		missing = true;
	}
	if (use->readsInput) {
		auto data = call.readUser(a->data, use->size);
		if (!data)
			return 1;
		auto p = reinterpret_cast<const uint8_t *>(data->data());
		in.insert(in.end(), p, p + use->size);
	}
	return missing ? 1 : 0;
}

int smbusPerform(int fd, uint32_t request, const std::vector<uint8_t> &in, std::vector<uint8_t> &out)
{
	if (in.size() < 6)
		return -EINVAL;
	union i2c_smbus_data block {};
	struct i2c_smbus_ioctl_data data {};
	data.read_write = in[0];
	data.command = in[1];
	data.size = get16(&in[2]) | static_cast<uint32_t>(get16(&in[4])) << 16;
	auto use = smbusDataUse(data.size, data.read_write == I2C_SMBUS_READ);
	if (!use)
		return -EINVAL;
	std::memcpy(&block, in.data() + 6, std::min(in.size() - 6, sizeof(block)));
	data.data = use->size ? &block : nullptr;
	int ret = ::ioctl(fd, request, &data);
	if (ret < 0)
		return -errno;
	auto p = reinterpret_cast<const uint8_t *>(&block);
	out.assign(p, p + (use->answers ? use->size : 0));
	return ret;
}

} // namespace

const PointerIoctl kI2cRdwr = { rdwrGather, rdwrPerform };
const PointerIoctl kI2cSmbus = { smbusGather, smbusPerform };

} // namespace devemu::trace
