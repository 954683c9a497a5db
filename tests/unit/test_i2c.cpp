// SPDX-License-Identifier: MIT
// Unit tests of the i2c model: the i2c-dev ioctls through the core's retry rounds, the bus and its EEPROM and LM75 chips.
#include "harness.h"

#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <sys/ioctl.h>

#include <cstdint>

using namespace devemu;

namespace {

constexpr uint64_t kArg = 0x1000; /* the ioctl's argument struct */
constexpr uint64_t kMsgs = 0x2000; /* i2c_msg array / smbus data */
constexpr uint64_t kBufs = 0x10000; /* message buffers, 64 KiB apart */
constexpr uint64_t kBad = 0xdead0000;

template<typename T>
void put(test::FakeMemory &mem, uint64_t at, const T &value)
{
	auto &r = mem.regions[at];
	r.resize(sizeof(T));
	std::memcpy(r.data(), &value, sizeof(T));
}

template<typename T>
T get(test::FakeMemory &mem, uint64_t at)
{
	T value;
	std::memcpy(&value, mem.regions.at(at).data(), sizeof(T));
	return value;
}

/* One I2C message for Bus::rdwr: a write carries bytes, a read names its length. */
struct Msg {
	uint16_t addr;
	uint16_t flags;
	std::vector<uint8_t> bytes; /* write data, or the initial read buffer */
};

struct Bus {
	explicit Bus(ModelOptions::Pairs options = {}) : h("i2c", std::move(options)) { fh = h.open(); }

	int ioctl(uint32_t cmd, uint64_t arg, int *rounds = nullptr)
	{
		return h.ioctl(static_cast<uint32_t>(fh), cmd, arg, mem, rounds);
	}

	int smbus(uint8_t rw, uint8_t command, uint32_t size, i2c_smbus_data *data)
	{
		i2c_smbus_ioctl_data a{};
		a.read_write = rw;
		a.command = command;
		a.size = size;
		a.data = data ? reinterpret_cast<i2c_smbus_data *>(kMsgs) : nullptr;
		put(mem, kArg, a);
		if (data)
			put(mem, kMsgs, *data);
		int ret = ioctl(I2C_SMBUS, kArg);
		if (data)
			*data = get<i2c_smbus_data>(mem, kMsgs);
		return ret;
	}
	int readByteData(uint8_t addr, uint8_t command)
	{
		REQUIRE(ioctl(I2C_SLAVE, addr) == 0);
		i2c_smbus_data d{};
		int ret = smbus(I2C_SMBUS_READ, command, I2C_SMBUS_BYTE_DATA, &d);
		return ret < 0 ? ret : d.byte;
	}
	int writeByteData(uint8_t addr, uint8_t command, uint8_t value)
	{
		REQUIRE(ioctl(I2C_SLAVE, addr) == 0);
		i2c_smbus_data d{};
		d.byte = value;
		return smbus(I2C_SMBUS_WRITE, command, I2C_SMBUS_BYTE_DATA, &d);
	}
	int readWordData(uint8_t addr, uint8_t command)
	{
		REQUIRE(ioctl(I2C_SLAVE, addr) == 0);
		i2c_smbus_data d{};
		int ret = smbus(I2C_SMBUS_READ, command, I2C_SMBUS_WORD_DATA, &d);
		return ret < 0 ? ret : d.word;
	}
	int quick(uint8_t addr)
	{
		REQUIRE(ioctl(I2C_SLAVE, addr) == 0);
		return smbus(I2C_SMBUS_WRITE, 0, I2C_SMBUS_QUICK, nullptr);
	}

	/* I2C_RDWR; read messages come back in msgs[i].bytes. */
	int rdwr(std::vector<Msg> &msgs, int *rounds = nullptr)
	{
		std::vector<i2c_msg> raw(msgs.size());
		for (size_t i = 0; i < msgs.size(); i++) {
			uint64_t at = kBufs * (i + 1);
			mem.regions[at].assign(
				reinterpret_cast<const std::byte *>(msgs[i].bytes.data()),
				reinterpret_cast<const std::byte *>(msgs[i].bytes.data() + msgs[i].bytes.size()));
			raw[i] = { msgs[i].addr, msgs[i].flags, static_cast<uint16_t>(msgs[i].bytes.size()),
				   reinterpret_cast<uint8_t *>(at) };
		}
		auto &r = mem.regions[kMsgs];
		r.resize(raw.size() * sizeof(i2c_msg));
		if (!raw.empty()) /* memcpy from a null pointer is undefined even for 0 bytes */
			std::memcpy(r.data(), raw.data(), r.size());
		put(mem, kArg,
		    i2c_rdwr_ioctl_data{ reinterpret_cast<i2c_msg *>(kMsgs), static_cast<uint32_t>(msgs.size()) });
		int ret = ioctl(I2C_RDWR, kArg, rounds);
		for (size_t i = 0; i < msgs.size(); i++) {
			const auto &b = mem.regions[kBufs * (i + 1)];
			msgs[i].bytes.assign(reinterpret_cast<const uint8_t *>(b.data()),
					     reinterpret_cast<const uint8_t *>(b.data() + b.size()));
		}
		return ret;
	}

	std::string inject(std::vector<std::string> args, int expect = 0)
	{
		std::string reply;
		CHECK(h.core_->inject(args, reply) == expect);
		return reply;
	}

	test::Harness h;
	int fh;
	test::FakeMemory mem;
};

Msg w(uint16_t addr, std::vector<uint8_t> bytes)
{
	return { addr, 0, std::move(bytes) };
}
Msg r(uint16_t addr, size_t len)
{
	return { addr, I2C_M_RD, std::vector<uint8_t>(len, 0) };
}

uint8_t crc8(std::vector<uint8_t> bytes)
{
	uint8_t crc = 0;
	for (uint8_t b : bytes) {
		crc ^= b;
		for (int i = 0; i < 8; i++)
			crc = static_cast<uint8_t>(crc & 0x80 ? (crc << 1) ^ 0x07 : crc << 1);
	}
	return crc;
}

} // namespace

TEST_CASE("i2c: I2C_FUNCS writes an unsigned long with plain I2C and SMBus emulation, in one retry round")
{
	Bus bus;
	put(bus.mem, kArg, uint64_t{ 0 });
	int rounds = 0;
	REQUIRE(bus.ioctl(I2C_FUNCS, kArg, &rounds) == 0);
	CHECK(rounds == 2);
	auto funcs = get<uint64_t>(bus.mem, kArg);
	CHECK((funcs & I2C_FUNC_I2C) != 0);
	CHECK((funcs & I2C_FUNC_SMBUS_EMUL) == I2C_FUNC_SMBUS_EMUL);
	CHECK((funcs & I2C_FUNC_SMBUS_READ_BLOCK_DATA) != 0);
	CHECK(bus.ioctl(I2C_FUNCS, kBad) == -EFAULT);
}

TEST_CASE("i2c: I2C_SLAVE and I2C_SLAVE_FORCE take the address itself, 7-bit unless I2C_TENBIT")
{
	Bus bus;
	for (uint32_t cmd : { I2C_SLAVE, I2C_SLAVE_FORCE }) {
		CHECK(bus.ioctl(cmd, 0x7f) == 0);
		CHECK(bus.ioctl(cmd, 0x80) == -EINVAL);
		CHECK(bus.ioctl(cmd, 0x3ff) == -EINVAL);
	}
	CHECK(bus.ioctl(I2C_TENBIT, 1) == 0);
	CHECK(bus.ioctl(I2C_SLAVE, 0x3ff) == 0);
	CHECK(bus.ioctl(I2C_SLAVE, 0x400) == -EINVAL);
	/* A 10-bit address phase finds none of the 7-bit chips. */
	CHECK(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0, I2C_SMBUS_QUICK, nullptr) == -ENXIO);
	CHECK(bus.ioctl(I2C_TENBIT, 0) == 0);
	CHECK(bus.quick(0x50) == 0);
}

TEST_CASE("i2c: a scan of the bus finds exactly the configured chips, others NAK with ENXIO")
{
	std::vector<std::pair<std::string, std::vector<int>>> cases{
		{ "", { 0x48, 0x50 } }, { "lm75@0x49+eeprom@0x57+eeprom@0x51", { 0x49, 0x51, 0x57 } }, { "none", {} }
	};
	for (const auto &[spec, expected] : cases) {
		Bus bus(spec.empty() ? ModelOptions::Pairs{} : ModelOptions::Pairs{ { "slaves", spec } });
		std::vector<int> found;
		for (int addr = 0x03; addr <= 0x77; addr++) {
			int ret = bus.quick(static_cast<uint8_t>(addr));
			if (ret == 0)
				found.push_back(addr);
			else
				CHECK(ret == -ENXIO);
		}
		CHECK(found == expected);
	}
}

TEST_CASE("i2c: an SMBus byte written to the EEPROM reads back; the erased chip reads 0xff")
{
	Bus bus;
	CHECK(bus.readByteData(0x50, 0x10) == 0xff);
	CHECK(bus.writeByteData(0x50, 0x10, 0xab) == 0);
	CHECK(bus.readByteData(0x50, 0x10) == 0xab);
	CHECK(bus.readByteData(0x50, 0x11) == 0xff);
	CHECK(bus.inject({ "eeprom", "0x50", "dump" }).find("10: ab ff") != std::string::npos);
}

TEST_CASE("i2c: an EEPROM page write wraps within its 8-byte page; reads roll over at 256")
{
	Bus bus;
	std::vector<Msg> msgs{ w(0x50, { 0x06, 1, 2, 3, 4 }) };
	REQUIRE(bus.rdwr(msgs) == 1);
	CHECK(bus.readByteData(0x50, 0x06) == 1);
	CHECK(bus.readByteData(0x50, 0x07) == 2);
	CHECK(bus.readByteData(0x50, 0x00) == 3);
	CHECK(bus.readByteData(0x50, 0x01) == 4);
	CHECK(bus.readByteData(0x50, 0x08) == 0xff);

	/* More than a page: the later bytes overwrite the earlier ones. */
	std::vector<uint8_t> ten{ 0x20 };
	for (uint8_t i = 0; i < 10; i++)
		ten.push_back(0x30 + i);
	msgs = { w(0x50, ten) };
	REQUIRE(bus.rdwr(msgs) == 1);
	CHECK(bus.readByteData(0x50, 0x20) == 0x38);
	CHECK(bus.readByteData(0x50, 0x21) == 0x39);
	CHECK(bus.readByteData(0x50, 0x22) == 0x32);

	bus.inject({ "eeprom", "0x50", "write", "0xfe", "0xaa", "0xbb" });
	msgs = { w(0x50, { 0xfe }), r(0x50, 4) };
	REQUIRE(bus.rdwr(msgs) == 2);
	CHECK(msgs[1].bytes == std::vector<uint8_t>{ 0xaa, 0xbb, 3, 4 });
	/* The address counter carries on from there: a current-address read. */
	msgs = { r(0x50, 1) };
	REQUIRE(bus.rdwr(msgs) == 1);
	CHECK(msgs[0].bytes[0] == 0xff);
}

TEST_CASE("i2c: an EEPROM write is programmed at STOP; a repeated START abandons it")
{
	Bus bus;
	std::vector<Msg> msgs{ w(0x50, { 0x40, 0x99 }), r(0x50, 1) };
	REQUIRE(bus.rdwr(msgs) == 2);
	CHECK(bus.readByteData(0x50, 0x40) == 0xff);
}

TEST_CASE("i2c: I2C_RDWR runs one round per level of indirection: struct, messages, buffers")
{
	Bus bus;
	std::vector<Msg> msgs{ w(0x50, { 0x10 }), r(0x50, 4) };
	int rounds = 0;
	REQUIRE(bus.rdwr(msgs, &rounds) == 2);
	CHECK(rounds == 4); /* the read buffer's room is asked for with the write buffer */
	CHECK(msgs[1].bytes == std::vector<uint8_t>(4, 0xff));
}

TEST_CASE("i2c: I2C_RDWR refuses bad message sets like i2c-dev")
{
	Bus bus;
	std::vector<Msg> none;
	CHECK(bus.rdwr(none) == -EINVAL);
	std::vector<Msg> many(43, r(0x50, 1));
	CHECK(bus.rdwr(many) == -EINVAL);
	std::vector<Msg> max(42, r(0x50, 1));
	CHECK(bus.rdwr(max) == 42);
	std::vector<Msg> huge{ r(0x50, 8193) };
	CHECK(bus.rdwr(huge) == -EINVAL);
	std::vector<Msg> big{ r(0x50, 8192) };
	CHECK(bus.rdwr(big) == 1);

	/* A NULL msgs pointer. */
	put(bus.mem, kArg, i2c_rdwr_ioctl_data{ nullptr, 1 });
	CHECK(bus.ioctl(I2C_RDWR, kArg) == -EINVAL);
	/* msgs pointing nowhere, the struct itself nowhere. */
	put(bus.mem, kArg, i2c_rdwr_ioctl_data{ reinterpret_cast<i2c_msg *>(kBad), 1 });
	CHECK(bus.ioctl(I2C_RDWR, kArg) == -EFAULT);
	CHECK(bus.ioctl(I2C_RDWR, kBad) == -EFAULT);
}

TEST_CASE("i2c: a bad buffer pointer in I2C_RDWR gives EFAULT before the bus moves")
{
	Bus bus;
	std::vector<Msg> msgs{ w(0x50, { 0x10, 0x55 }) };
	bus.rdwr(msgs);
	/* Now point message 0 (a write of 0x77 at 0x10) at valid memory and message 1 (a read) nowhere. */
	msgs = { w(0x50, { 0x10, 0x77 }), r(0x50, 2) };
	bus.rdwr(msgs); /* lays the structures out */
	auto raw = get<std::array<i2c_msg, 2>>(bus.mem, kMsgs);
	raw[1].buf = reinterpret_cast<uint8_t *>(kBad);
	put(bus.mem, kMsgs, raw);
	bus.inject({ "eeprom", "0x50", "write", "0x10", "0x55" });
	CHECK(bus.ioctl(I2C_RDWR, kArg) == -EFAULT);
	CHECK(bus.readByteData(0x50, 0x10) == 0x55);
	/* And a bad write buffer. */
	raw[0].buf = reinterpret_cast<uint8_t *>(kBad);
	raw[1].buf = reinterpret_cast<uint8_t *>(kBufs * 2);
	put(bus.mem, kMsgs, raw);
	put(bus.mem, kArg, i2c_rdwr_ioctl_data{ reinterpret_cast<i2c_msg *>(kMsgs), 2 });
	CHECK(bus.ioctl(I2C_RDWR, kArg) == -EFAULT);
}

TEST_CASE("i2c: an empty address NAKs with ENXIO; the messages before it keep their effects")
{
	Bus bus;
	std::vector<Msg> msgs{ w(0x50, { 0x30 }), r(0x51, 1) };
	CHECK(bus.rdwr(msgs) == -ENXIO);
	/* The counter was set to 0x30 by the first message. */
	bus.inject({ "eeprom", "0x50", "write", "0x30", "0x42" });
	msgs = { r(0x50, 1) };
	REQUIRE(bus.rdwr(msgs) == 1);
	CHECK(msgs[0].bytes[0] == 0x42);
	CHECK(bus.readByteData(0x23, 0) == -ENXIO);
}

TEST_CASE("i2c: I2C_M_RECV_LEN takes the length from the chip and returns the updated buffer")
{
	Bus bus;
	bus.inject({ "eeprom", "0x50", "write", "0x60", "3", "0xa", "0xb", "0xc", "0xd" });
	std::vector<uint8_t> buf(33, 0xee);
	buf[0] = 1;
	std::vector<Msg> msgs{ w(0x50, { 0x60 }), { 0x50, I2C_M_RD | I2C_M_RECV_LEN, buf } };
	REQUIRE(bus.rdwr(msgs) == 2);
	/* Only count + 1 bytes are the chip's; the rest of the caller's buffer is untouched. */
	CHECK(std::vector<uint8_t>(msgs[1].bytes.begin(), msgs[1].bytes.begin() + 5) ==
	      std::vector<uint8_t>{ 3, 0xa, 0xb, 0xc, 0xee });
	CHECK(msgs[1].bytes.back() == 0xee);
	buf.assign(33, 0);
	buf[0] = 1;

	/* Too small a buffer, no extra count, or a write: EINVAL. */
	std::vector<Msg> small{ w(0x50, { 0x60 }), { 0x50, I2C_M_RD | I2C_M_RECV_LEN, std::vector<uint8_t>(32, 1) } };
	CHECK(bus.rdwr(small) == -EINVAL);
	buf[0] = 0;
	std::vector<Msg> zero{ { 0x50, I2C_M_RD | I2C_M_RECV_LEN, buf } };
	CHECK(bus.rdwr(zero) == -EINVAL);
	buf[0] = 1;
	std::vector<Msg> write{ { 0x50, I2C_M_RECV_LEN, buf } };
	CHECK(bus.rdwr(write) == -EINVAL);

	/* A count the chip sends that is 0 or above 32 is a protocol error. */
	bus.inject({ "eeprom", "0x50", "write", "0x70", "0", "33" });
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	i2c_smbus_data d{};
	CHECK(bus.smbus(I2C_SMBUS_READ, 0x70, I2C_SMBUS_BLOCK_DATA, &d) == -EPROTO);
	CHECK(bus.smbus(I2C_SMBUS_READ, 0x71, I2C_SMBUS_BLOCK_DATA, &d) == -EPROTO);
	CHECK(bus.smbus(I2C_SMBUS_READ, 0x60, I2C_SMBUS_BLOCK_DATA, &d) == 0);
	CHECK(d.block[0] == 3);
	CHECK(d.block[3] == 0xc);
}

TEST_CASE("i2c: SMBus block and i2c-block transfers move up to 32 bytes; larger sizes are EINVAL")
{
	Bus bus;
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	i2c_smbus_data d{};
	d.block[0] = 4;
	for (int i = 1; i <= 4; i++)
		d.block[i] = static_cast<uint8_t>(0xc0 + i);
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0x80, I2C_SMBUS_I2C_BLOCK_DATA, &d) == 0);
	i2c_smbus_data back{};
	back.block[0] = 6;
	CHECK(bus.smbus(I2C_SMBUS_READ, 0x80, I2C_SMBUS_I2C_BLOCK_DATA, &back) == 0);
	CHECK(back.block[1] == 0xc1);
	CHECK(back.block[4] == 0xc4);
	CHECK(back.block[5] == 0xff);
	/* The old convention always reads 32. */
	i2c_smbus_data broken{};
	CHECK(bus.smbus(I2C_SMBUS_READ, 0x80, I2C_SMBUS_I2C_BLOCK_BROKEN, &broken) == 0);
	CHECK(broken.block[0] == 32);
	CHECK(broken.block[2] == 0xc2);
	/* SMBus block write: the count goes on the wire. */
	i2c_smbus_data blk{};
	blk.block[0] = 2;
	blk.block[1] = 0x11;
	blk.block[2] = 0x22;
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0x90, I2C_SMBUS_BLOCK_DATA, &blk) == 0);
	CHECK(bus.readByteData(0x50, 0x90) == 2);
	CHECK(bus.readByteData(0x50, 0x92) == 0x22);

	i2c_smbus_data tooBig{};
	tooBig.block[0] = 33;
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0, I2C_SMBUS_I2C_BLOCK_DATA, &tooBig) == -EINVAL);
	CHECK(bus.smbus(I2C_SMBUS_READ, 0, I2C_SMBUS_I2C_BLOCK_DATA, &tooBig) == -EINVAL);
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0, I2C_SMBUS_BLOCK_DATA, &tooBig) == -EINVAL);
}

TEST_CASE("i2c: an SMBus read takes three rounds: the struct, then the data union's room")
{
	Bus bus;
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	i2c_smbus_ioctl_data a{ I2C_SMBUS_READ, 0, I2C_SMBUS_BYTE_DATA, reinterpret_cast<i2c_smbus_data *>(kMsgs) };
	put(bus.mem, kArg, a);
	put(bus.mem, kMsgs, i2c_smbus_data{});
	int rounds = 0;
	CHECK(bus.ioctl(I2C_SMBUS, kArg, &rounds) == 0);
	CHECK(rounds == 3);
	CHECK(get<i2c_smbus_data>(bus.mem, kMsgs).byte == 0xff);
	/* The EEPROM's counter moved once only, though the transfer was computed in two rounds. */
	std::vector<Msg> msgs{ r(0x50, 1) };
	bus.inject({ "eeprom", "0x50", "write", "1", "0x11" });
	REQUIRE(bus.rdwr(msgs) == 1);
	CHECK(msgs[0].bytes[0] == 0x11);
}

TEST_CASE("i2c: I2C_SMBUS checks its arguments like i2c-dev")
{
	Bus bus;
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	i2c_smbus_data d{};
	CHECK(bus.smbus(I2C_SMBUS_READ, 0, 9, &d) == -EINVAL);
	CHECK(bus.smbus(2, 0, I2C_SMBUS_BYTE_DATA, &d) == -EINVAL);
	CHECK(bus.smbus(I2C_SMBUS_READ, 0, I2C_SMBUS_BYTE_DATA, nullptr) == -EINVAL);
	/* quick and write byte do not use data at all */
	CHECK(bus.smbus(I2C_SMBUS_READ, 0, I2C_SMBUS_QUICK, nullptr) == 0);
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0x05, I2C_SMBUS_BYTE, nullptr) == 0);
	/* ... so the write byte set the counter: a receive byte reads from there. */
	bus.inject({ "eeprom", "0x50", "write", "5", "0x5a" });
	CHECK(bus.smbus(I2C_SMBUS_READ, 0, I2C_SMBUS_BYTE, &d) == 0);
	CHECK(d.byte == 0x5a);
	/* data pointing nowhere */
	i2c_smbus_ioctl_data a{ I2C_SMBUS_READ, 0, I2C_SMBUS_BYTE_DATA, reinterpret_cast<i2c_smbus_data *>(kBad) };
	put(bus.mem, kArg, a);
	CHECK(bus.ioctl(I2C_SMBUS, kArg) == -EFAULT);
	CHECK(bus.ioctl(I2C_SMBUS, kBad) == -EFAULT);
}

TEST_CASE("i2c: the LM75 reports the injected temperature in its 9-bit big-endian register")
{
	Bus bus;
	bus.inject({ "temp", "0x48", "23.5" });
	int word = bus.readWordData(0x48, 0);
	/* SMBus words are little-endian on the wire, the LM75 sends MSB first: i2cget shows it swapped. */
	CHECK(word == 0x8017);
	bus.inject({ "temp", "0x48", "-0.5" });
	CHECK(bus.readWordData(0x48, 0) == 0x80ff);
	bus.inject({ "temp", "0x48", "-55" });
	CHECK(bus.readWordData(0x48, 0) == 0x00c9); /* 0xc900 */
	bus.inject({ "temp", "0x48", "125" });
	CHECK(bus.readWordData(0x48, 0) == 0x007d);
	/* 0.25 degC is below the resolution: it rounds down. */
	bus.inject({ "temp", "0x48", "20.25" });
	CHECK(bus.readWordData(0x48, 0) == 0x0014);
	/* Reset values: thyst 75, tos 80, conf 0. */
	CHECK(bus.readWordData(0x48, 2) == 0x004b);
	CHECK(bus.readWordData(0x48, 3) == 0x0050);
	CHECK(bus.readByteData(0x48, 1) == 0);
	bus.inject({ "temp", "0x48", "126" }, -EINVAL);
	bus.inject({ "temp", "0x48", "warm" }, -EINVAL);
	bus.inject({ "temp", "0x50", "20" }, -ENODEV);
}

TEST_CASE("i2c: LM75 registers: writable limits keep 9 bits, temp is read-only, shutdown freezes the reading")
{
	Bus bus;
	bus.inject({ "temp", "0x48", "30" });
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x48) == 0);
	i2c_smbus_data d{};
	d.word = 0xff46; /* MSB 0x46, LSB 0xff on the wire */
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 3, I2C_SMBUS_WORD_DATA, &d) == 0);
	CHECK(bus.readWordData(0x48, 3) == 0x8046);
	d.word = 0x0000;
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0, I2C_SMBUS_WORD_DATA, &d) == 0);
	CHECK(bus.readWordData(0x48, 0) == 0x001e);
	/* The pointer does not auto-increment: a longer read repeats the register. */
	std::vector<Msg> msgs{ w(0x48, { 0 }), r(0x48, 4) };
	REQUIRE(bus.rdwr(msgs) == 2);
	CHECK(msgs[1].bytes == std::vector<uint8_t>{ 0x1e, 0, 0x1e, 0 });
	/* Shutdown: the last conversion stays; waking up converts again. */
	CHECK(bus.writeByteData(0x48, 1, 0x01) == 0);
	bus.inject({ "temp", "0x48", "40" });
	CHECK(bus.readWordData(0x48, 0) == 0x001e);
	CHECK(bus.writeByteData(0x48, 1, 0x00) == 0);
	CHECK(bus.readWordData(0x48, 0) == 0x0028);
	CHECK(bus.inject({ "temp", "0x48" }).find("temp 0x2800") != std::string::npos);
}

TEST_CASE("i2c: with I2C_PEC, SMBus reads check the chip's CRC-8 and fail with EBADMSG on a mismatch")
{
	Bus bus;
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	REQUIRE(bus.ioctl(I2C_PEC, 1) == 0);
	/* The EEPROM knows nothing of PEC: the byte after the data is whatever is stored there. */
	bus.inject({ "eeprom", "0x50", "write", "0x20", "0x12", "0x00" });
	i2c_smbus_data d{};
	uint8_t good = crc8({ 0xa0, 0x20, 0xa1, 0x12 });
	REQUIRE(good != 0x00);
	CHECK(bus.smbus(I2C_SMBUS_READ, 0x20, I2C_SMBUS_BYTE_DATA, &d) == -EBADMSG);
	/* Store the right PEC after the data and the same read passes. */
	bus.inject({ "eeprom", "0x50", "write", "0x21", std::to_string(good) });
	CHECK(bus.smbus(I2C_SMBUS_READ, 0x20, I2C_SMBUS_BYTE_DATA, &d) == 0);
	CHECK(d.byte == 0x12);
	/* A PEC write appends the CRC: the EEPROM stores it as the next byte. */
	d.byte = 0x34;
	CHECK(bus.smbus(I2C_SMBUS_WRITE, 0x28, I2C_SMBUS_BYTE_DATA, &d) == 0);
	REQUIRE(bus.ioctl(I2C_PEC, 0) == 0);
	CHECK(bus.readByteData(0x50, 0x28) == 0x34);
	CHECK(bus.readByteData(0x50, 0x29) == crc8({ 0xa0, 0x28, 0x34 }));
}

TEST_CASE("i2c: read() and write() on the node are single messages to the I2C_SLAVE address")
{
	Bus bus;
	uint32_t fh = static_cast<uint32_t>(bus.fh);
	/* Before I2C_SLAVE the client talks to address 0: nobody answers. */
	CHECK(bus.h.write(fh, test::bytes("\x10"))->result == -ENXIO);
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	CHECK(bus.h.write(fh, test::bytes("\x10hi"))->result == 3);
	CHECK(bus.h.write(fh, test::bytes("\x10"))->result == 1);
	auto got = bus.h.read(fh, 3);
	REQUIRE(got->done);
	CHECK(got->result == 3);
	CHECK(test::text(got->data) == "hi\xff");
	CHECK((bus.h.poll(fh) & POLLIN) != 0);
}

TEST_CASE("i2c: I2C_RETRIES and I2C_TIMEOUT are accepted up to INT_MAX; unknown ioctls are ENOTTY")
{
	Bus bus;
	CHECK(bus.ioctl(I2C_RETRIES, 3) == 0);
	CHECK(bus.ioctl(I2C_TIMEOUT, 100) == 0);
	CHECK(bus.ioctl(I2C_RETRIES, 0x80000000ULL) == -EINVAL);
	CHECK(bus.ioctl(I2C_TIMEOUT, 0x80000000ULL) == -EINVAL);
	CHECK(bus.inject({ "slaves" }).find("retries 3, timeout 1000 ms") != std::string::npos);
	CHECK(bus.ioctl(_IOR('i', 1, int), kArg) == -ENOTTY);
	CHECK(bus.ioctl(0x0709, 0) == -ENOTTY);
}

TEST_CASE("i2c: a restricted (FUSE) driver cannot carry I2C_FUNCS and gets ENOTTY")
{
	Bus bus;
	auto o = bus.h.restrictedIoctl(static_cast<uint32_t>(bus.fh), I2C_FUNCS, {}, 0);
	REQUIRE(o->done);
	CHECK(o->result == -ENOTTY);
	/* Value-argument ioctls need no memory and work there. */
	auto s = bus.h.restrictedIoctl(static_cast<uint32_t>(bus.fh), I2C_TENBIT, {}, 0);
	REQUIRE(s->done);
	CHECK(s->result == 0);
}

TEST_CASE("i2c: options: chip list, EEPROM fill and temperature are checked")
{
	auto factory = ModelRegistry::builtin().find("i2c")->factory;
	auto fails = [&](ModelOptions::Pairs pairs, std::string_view key) {
		ModelOptions opts("t", "i2c", std::move(pairs));
		test::Harness probe("loopback");
		factory(opts, *probe.core_);
		CHECK(opts.error().find(key) != std::string::npos);
		CHECK_FALSE(opts.error().empty());
	};
	fails({ { "slaves", "flash@0x50" } }, "unknown chip 'flash'");
	fails({ { "slaves", "eeprom@0x50+lm75@0x50" } }, "two chips at 0x50");
	fails({ { "slaves", "eeprom@0x78" } }, "outside 0x03..0x77");
	fails({ { "slaves", "eeprom" } }, "KIND@ADDR");
	fails({ { "temp", "200" } }, "temp");
	fails({ { "eeprom_fill", "0x100" } }, "eeprom_fill");
	fails({ { "colour", "red" } }, "colour");

	Bus bus({ { "eeprom_fill", "0" }, { "temp", "-10" } });
	CHECK(bus.readByteData(0x50, 0) == 0);
	CHECK(bus.readWordData(0x48, 0) == 0x00f6);
	CHECK(bus.inject({ "eeprom", "0x50", "fill", "0x5a" }) == "filled 256 bytes with 0x5a");
	CHECK(bus.readByteData(0x50, 0x99) == 0x5a);
	bus.inject({ "eeprom", "0x50", "fill", "0x100" }, -EINVAL);
	bus.inject({ "bogus" }, -EINVAL);
	bus.inject({ "eeprom", "0x52", "dump" }, -ENODEV);
}

TEST_CASE("i2c: a 32-bit caller's I2C_FUNCS, I2C_SMBUS and I2C_RDWR are decoded in its layout")
{
	Bus bus;
	bus.h.setCompat(true);

	/* I2C_FUNCS: a 4-byte unsigned long; the word after it is left alone. */
	put(bus.mem, kArg, std::array<uint32_t, 2>{ 0, 0xa5a5a5a5u });
	REQUIRE(bus.ioctl(I2C_FUNCS, kArg) == 0);
	auto funcs = get<std::array<uint32_t, 2>>(bus.mem, kArg);
	CHECK((funcs[0] & I2C_FUNC_I2C) != 0);
	CHECK(funcs[1] == 0xa5a5a5a5u);

	/* I2C_SMBUS: { u8 read_write, u8 command, u32 size, u32 data } (12 bytes). */
	REQUIRE(bus.ioctl(I2C_SLAVE, 0x50) == 0);
	struct {
		uint8_t readWrite, command;
		uint16_t pad;
		uint32_t size, data;
	} smbus{ I2C_SMBUS_WRITE, 0x20, 0, I2C_SMBUS_BYTE_DATA, static_cast<uint32_t>(kMsgs) };
	static_assert(sizeof(smbus) == 12);
	put(bus.mem, kArg, smbus);
	put(bus.mem, kMsgs, uint8_t{ 0x7e });
	REQUIRE(bus.ioctl(I2C_SMBUS, kArg) == 0);
	smbus.readWrite = I2C_SMBUS_READ;
	put(bus.mem, kArg, smbus);
	put(bus.mem, kMsgs, uint8_t{ 0 });
	REQUIRE(bus.ioctl(I2C_SMBUS, kArg) == 0);
	CHECK(get<uint8_t>(bus.mem, kMsgs) == 0x7e);

	/* I2C_RDWR: { u32 msgs, u32 nmsgs } and 12-byte messages { addr, flags, len, u32 buf }. */
	struct Msg32 {
		uint16_t addr, flags, len, pad;
		uint32_t buf;
	};
	static_assert(sizeof(Msg32) == 12);
	std::array<Msg32, 2> msgs{ Msg32{ 0x50, 0, 1, 0, static_cast<uint32_t>(kBufs) },
				   Msg32{ 0x50, I2C_M_RD, 2, 0, static_cast<uint32_t>(2 * kBufs) } };
	put(bus.mem, kMsgs, msgs);
	put(bus.mem, kBufs, uint8_t{ 0x20 });
	put(bus.mem, 2 * kBufs, uint16_t{ 0 });
	put(bus.mem, kArg, std::array<uint32_t, 2>{ static_cast<uint32_t>(kMsgs), 2 });
	CHECK(bus.ioctl(I2C_RDWR, kArg) == 2);
	auto got = get<std::array<uint8_t, 2>>(bus.mem, 2 * kBufs);
	CHECK(got[0] == 0x7e);
	CHECK(got[1] == 0xff); /* the erased byte after it */

	/* The same bytes read as a 64-bit caller's struct are a different request: nmsgs 0 is EINVAL. */
	bus.h.setCompat(false);
	put(bus.mem, kArg, std::array<uint32_t, 4>{ static_cast<uint32_t>(kMsgs), 2, 0, 0 });
	CHECK(bus.ioctl(I2C_RDWR, kArg) == -EINVAL);
}
