// SPDX-License-Identifier: MIT
// i2c: combined transfers on the bus, and SMBus transactions (with PEC) built from I2C messages.
#include "i2c_bus.h"

#include <algorithm>
#include <cerrno>

namespace devemu {

namespace {

/* SMBus packet error code: CRC-8, polynomial x^8 + x^2 + x + 1. */
uint8_t pec(uint8_t crc, std::span<const uint8_t> bytes)
{
	for (uint8_t b : bytes) {
		crc ^= b;
		for (int i = 0; i < 8; i++)
			crc = static_cast<uint8_t>(crc & 0x80 ? (crc << 1) ^ 0x07 : crc << 1);
	}
	return crc;
}

} // namespace

int I2cBus::transfer(std::span<I2cMessage> msgs)
{
	int ret = static_cast<int>(msgs.size());
	bool faulted = false;
	/* A chip whose code failed ends the transfer with EIO at once. */
	auto fault = [&](I2cSlave *chip) {
		if (chip->takeFault())
			faulted = true;
		return faulted;
	};
	for (auto &m : msgs) {
		for (auto &[a, s] : slaves_) {
			s->busStart();
			fault(s.get());
		}
		if (faulted)
			break;
		bool read = m.flags & I2C_M_RD;
		I2cSlave *chip = nullptr;
		/* Only 7-bit chips sit on this bus: a 10-bit address phase finds nobody. */
		if (!(m.flags & I2C_M_TEN) && m.addr <= 0x7f) {
			auto it = slaves_.find(m.addr);
			if (it != slaves_.end())
				chip = it->second.get();
		}
		if (!chip) {
			ret = -ENXIO;
			break;
		}
		bool acked = chip->select(read);
		if (fault(chip))
			break;
		if (!acked) {
			ret = -ENXIO;
			break;
		}
		if (!read) {
			if (!std::all_of(m.buf.begin(), m.buf.end(),
					 [&](uint8_t b) { return chip->writeByte(b) && !fault(chip); })) {
				ret = -EIO;
				break;
			}
		} else if (m.flags & I2C_M_RECV_LEN) {
			/* buf.size() is the extra byte count (the length byte, maybe PEC); the chip sends the rest's length. */
			uint8_t count = chip->readByte();
			if (fault(chip))
				break;
			if (count == 0 || count > I2C_SMBUS_BLOCK_MAX) {
				ret = -EPROTO;
				break;
			}
			size_t len = m.buf.size() + count;
			m.buf.assign(len, 0);
			m.buf[0] = count;
			for (size_t i = 1; i < len && !fault(chip); i++)
				m.buf[i] = chip->readByte();
		} else {
			for (auto &b : m.buf) {
				b = chip->readByte();
				if (fault(chip))
					break;
			}
		}
		if (faulted)
			break;
	}
	for (auto &[a, s] : slaves_) {
		s->busStop();
		fault(s.get());
	}
	return faulted ? -EIO : ret;
}

int I2cBus::smbus(uint16_t addr, bool ten, bool usePec, uint8_t readWrite, uint8_t command, uint32_t size,
		  std::array<uint8_t, kSmbusDataSize> &data)
{
	uint16_t flags = ten ? I2C_M_TEN : 0;
	bool read = readWrite == I2C_SMBUS_READ;
	std::vector<I2cMessage> msg{ { addr, flags, { command } },
				     { addr, static_cast<uint16_t>(flags | I2C_M_RD), {} } };
	size_t nmsgs = read ? 2 : 1;
	bool wantsPec = usePec && size != I2C_SMBUS_QUICK && size != I2C_SMBUS_I2C_BLOCK_DATA;

	switch (size) {
	case I2C_SMBUS_QUICK:
		msg[0].buf.clear();
		msg[0].flags = static_cast<uint16_t>(flags | (read ? I2C_M_RD : 0));
		nmsgs = 1;
		break;
	case I2C_SMBUS_BYTE:
		if (read) {
			msg[0].flags = static_cast<uint16_t>(flags | I2C_M_RD);
			nmsgs = 1;
		}
		break;
	case I2C_SMBUS_BYTE_DATA:
		if (read)
			msg[1].buf.resize(1);
		else
			msg[0].buf.push_back(data[0]);
		break;
	case I2C_SMBUS_WORD_DATA:
		if (read) {
			msg[1].buf.resize(2);
		} else {
			msg[0].buf.push_back(data[0]);
			msg[0].buf.push_back(data[1]);
		}
		break;
	case I2C_SMBUS_PROC_CALL:
		nmsgs = 2;
		read = true;
		msg[0].buf.push_back(data[0]);
		msg[0].buf.push_back(data[1]);
		msg[1].buf.resize(2);
		break;
	case I2C_SMBUS_BLOCK_DATA:
		if (read) {
			msg[1].flags |= I2C_M_RECV_LEN;
			msg[1].buf.resize(1);
		} else {
			if (data[0] > I2C_SMBUS_BLOCK_MAX)
				return -EINVAL;
			msg[0].buf.insert(msg[0].buf.end(), data.begin(), data.begin() + data[0] + 1);
		}
		break;
	case I2C_SMBUS_BLOCK_PROC_CALL:
		nmsgs = 2;
		read = true;
		if (data[0] > I2C_SMBUS_BLOCK_MAX)
			return -EINVAL;
		msg[0].buf.insert(msg[0].buf.end(), data.begin(), data.begin() + data[0] + 1);
		msg[1].flags |= I2C_M_RECV_LEN;
		msg[1].buf.resize(1);
		break;
	case I2C_SMBUS_I2C_BLOCK_DATA:
		if (data[0] > I2C_SMBUS_BLOCK_MAX)
			return -EINVAL;
		if (read)
			msg[1].buf.resize(data[0]);
		else
			msg[0].buf.insert(msg[0].buf.end(), data.begin() + 1, data.begin() + 1 + data[0]);
		break;
	default:
		return -EOPNOTSUPP;
	}

	uint8_t partialPec = 0;
	if (wantsPec) {
		auto addrByte = [](const I2cMessage &m) {
			return static_cast<uint8_t>(m.addr << 1 | (m.flags & I2C_M_RD));
		};
		if (!(msg[0].flags & I2C_M_RD)) {
			uint8_t a = addrByte(msg[0]);
			uint8_t crc = pec(pec(0, { &a, 1 }), msg[0].buf);
			if (nmsgs == 1)
				msg[0].buf.push_back(crc);
			else
				partialPec = crc;
		}
		if (msg[nmsgs - 1].flags & I2C_M_RD)
			msg[nmsgs - 1].buf.resize(msg[nmsgs - 1].buf.size() + 1);
	}

	int status = transfer(std::span(msg).first(nmsgs));
	if (status < 0)
		return status;
	if (status != static_cast<int>(nmsgs))
		return -EIO;

	I2cMessage &last = msg[nmsgs - 1];
	if (wantsPec && (last.flags & I2C_M_RD)) {
		uint8_t received = last.buf.back();
		last.buf.pop_back();
		uint8_t a = static_cast<uint8_t>(last.addr << 1 | 1);
		if (received != pec(pec(partialPec, { &a, 1 }), last.buf))
			return -EBADMSG;
	}
	if (read) {
		switch (size) {
		case I2C_SMBUS_BYTE:
			data[0] = msg[0].buf[0];
			break;
		case I2C_SMBUS_BYTE_DATA:
			data[0] = msg[1].buf[0];
			break;
		case I2C_SMBUS_WORD_DATA:
		case I2C_SMBUS_PROC_CALL:
			data[0] = msg[1].buf[0];
			data[1] = msg[1].buf[1];
			break;
		case I2C_SMBUS_I2C_BLOCK_DATA:
			std::copy(msg[1].buf.begin(), msg[1].buf.end(), data.begin() + 1);
			break;
		case I2C_SMBUS_BLOCK_DATA:
		case I2C_SMBUS_BLOCK_PROC_CALL:
			std::copy(msg[1].buf.begin(), msg[1].buf.begin() + msg[1].buf[0] + 1, data.begin());
			break;
		}
	}
	return 0;
}

} // namespace devemu
