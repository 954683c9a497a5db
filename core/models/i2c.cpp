// SPDX-License-Identifier: MIT
// i2c: an i2c-dev adapter (<linux/i2c-dev.h>) whose bus carries emulated slave chips (24C02 EEPROM, LM75 sensor).
#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/number_text.h"

#include <fmt/core.h>

#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace devemu {

namespace {

/* The ioctl structures as a 64-bit caller lays them out (pointers are caller addresses). */
struct UserI2cMsg {
	uint16_t addr;
	uint16_t flags;
	uint16_t len;
	uint16_t pad;
	uint64_t buf;
};
struct UserRdwr {
	uint64_t msgs;
	uint32_t nmsgs;
	uint32_t pad;
};
struct UserSmbus {
	uint8_t readWrite;
	uint8_t command;
	uint16_t pad;
	uint32_t size;
	uint64_t data;
};
#if __SIZEOF_POINTER__ == 8
static_assert(sizeof(UserI2cMsg) == sizeof(struct i2c_msg) &&
	      offsetof(struct i2c_msg, buf) == offsetof(UserI2cMsg, buf));
static_assert(sizeof(UserRdwr) == sizeof(struct i2c_rdwr_ioctl_data));
static_assert(sizeof(UserSmbus) == sizeof(struct i2c_smbus_ioctl_data) &&
	      offsetof(struct i2c_smbus_ioctl_data, size) == offsetof(UserSmbus, size) &&
	      offsetof(struct i2c_smbus_ioctl_data, data) == offsetof(UserSmbus, data));
#endif
constexpr size_t kSmbusDataSize = sizeof(union i2c_smbus_data); /* 34: block[0] is the length */
static_assert(kSmbusDataSize == I2C_SMBUS_BLOCK_MAX + 2);

/* i2c-dev's limit for one message and for one read()/write(). */
constexpr unsigned kMaxMessage = 8192;
/* A plain I2C master: SMBus is emulated on top of I2C messages by the i2c core. */
constexpr uint64_t kFunctionality = I2C_FUNC_I2C | I2C_FUNC_10BIT_ADDR | I2C_FUNC_SMBUS_EMUL_ALL;

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

/*
 * A slave chip as its serial interface sees the bus: START conditions, its
 * own address with the direction bit, data bytes, STOP. Every chip sees every
 * START and STOP, addressed or not.
 */
class I2cSlave
{
public:
	virtual ~I2cSlave() = default;
	virtual std::unique_ptr<I2cSlave> clone() const = 0;
	virtual const char *kind() const = 0;
	/* START or repeated START (the interface of every chip resets). */
	virtual void busStart() {}
	/* The address phase named this chip; true: it ACKs. */
	virtual bool select(bool read) = 0;
	/* A byte from the master; true: ACK. */
	virtual bool writeByte(uint8_t byte) = 0;
	/* The next byte the chip drives for the master. */
	virtual uint8_t readByte() = 0;
	virtual void busStop() {}
	/* Multi-line description for devemuctl. */
	virtual std::string describe() const = 0;
};

/*
 * A 24C02: 256 bytes, 8-byte pages. A write sets the word address, then data
 * bytes fill the page buffer (the low three address bits wrap within the
 * page); STOP programs them. Reads start at the address counter and roll over
 * at 256.
 */
class Eeprom24c02 final : public I2cSlave
{
public:
	static constexpr size_t kSize = 256;
	static constexpr unsigned kPage = 8;

	explicit Eeprom24c02(uint8_t fill) { mem_.fill(fill); }

	std::unique_ptr<I2cSlave> clone() const override { return std::make_unique<Eeprom24c02>(*this); }
	const char *kind() const override { return "eeprom"; }

	void busStart() override
	{
		/* The write cycle starts only at STOP: a repeated START abandons the page buffer. */
		pageMask_ = 0;
		phase_ = Phase::Idle;
	}
	bool select(bool read) override
	{
		phase_ = read ? Phase::Reading : Phase::WordAddress;
		pageMask_ = 0;
		return true;
	}
	bool writeByte(uint8_t byte) override
	{
		if (phase_ == Phase::WordAddress) {
			counter_ = byte;
			phase_ = Phase::Data;
			return true;
		}
		unsigned slot = counter_ % kPage;
		pageBase_ = counter_ & ~(kPage - 1);
		page_[slot] = byte;
		pageMask_ |= 1u << slot;
		counter_ = static_cast<uint8_t>(pageBase_ | ((counter_ + 1) % kPage));
		return true;
	}
	uint8_t readByte() override
	{
		uint8_t v = mem_[counter_];
		counter_ = static_cast<uint8_t>(counter_ + 1);
		return v;
	}
	void busStop() override
	{
		if (phase_ == Phase::Data && pageMask_) {
			for (unsigned i = 0; i < kPage; i++)
				if (pageMask_ & (1u << i))
					mem_[pageBase_ + i] = page_[i];
			pagesWritten_++;
		}
		pageMask_ = 0;
		phase_ = Phase::Idle;
	}
	std::string describe() const override
	{
		std::string out = fmt::format("24C02 EEPROM, address counter 0x{:02x}, {} page writes\n", counter_,
					      pagesWritten_);
		out += "     0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f\n";
		for (size_t row = 0; row < kSize; row += 16) {
			out += fmt::format("{:02x}:", row);
			for (size_t i = 0; i < 16; i++)
				out += fmt::format(" {:02x}", mem_[row + i]);
			out += '\n';
		}
		return out;
	}

	void fill(uint8_t v) { mem_.fill(v); }
	void poke(uint8_t at, uint8_t v) { mem_[at] = v; }
	uint8_t peek(uint8_t at) const { return mem_[at]; }
	uint8_t counter() const { return counter_; }

private:
	enum class Phase { Idle, WordAddress, Data, Reading };
	std::array<uint8_t, kSize> mem_{};
	std::array<uint8_t, kPage> page_{};
	unsigned pageMask_ = 0;
	unsigned pageBase_ = 0;
	uint8_t counter_ = 0;
	Phase phase_ = Phase::Idle;
	uint64_t pagesWritten_ = 0;
};

/*
 * An LM75: a pointer register selects temp (0, read-only), conf (1, 8-bit),
 * thyst (2) or tos (3); the 16-bit ones go MSB first and hold a 9-bit two's
 * complement temperature in D15..D7 (0.5 degC steps). The pointer does not
 * auto-increment: longer reads repeat the register.
 */
class Lm75 final : public I2cSlave
{
public:
	enum Reg { Temp = 0, Conf = 1, Thyst = 2, Tos = 3 };
	static constexpr uint8_t kShutdown = 0x01, kInterruptMode = 0x02, kOsActiveHigh = 0x04;

	explicit Lm75(int halfDegrees) { setAmbient(halfDegrees); }

	std::unique_ptr<I2cSlave> clone() const override { return std::make_unique<Lm75>(*this); }
	const char *kind() const override { return "lm75"; }

	bool select(bool read) override
	{
		phase_ = read ? Phase::Reading : Phase::Pointer;
		index_ = 0;
		if (read && (conf_ & kInterruptMode))
			os_ = false; /* interrupt mode: any read resets OS */
		return true;
	}
	bool writeByte(uint8_t byte) override
	{
		if (phase_ == Phase::Pointer) {
			pointer_ = byte & 3;
			phase_ = Phase::Data;
			index_ = 0;
			return true;
		}
		switch (pointer_) {
		case Temp:
			break; /* read-only: acknowledged and ignored */
		case Conf: {
			bool wasShutdown = conf_ & kShutdown;
			conf_ = byte & 0x1f;
			if (wasShutdown && !(conf_ & kShutdown))
				convert();
			break;
		}
		default: {
			uint16_t &reg = pointer_ == Thyst ? thyst_ : tos_;
			if (index_ % 2 == 0)
				reg = static_cast<uint16_t>((reg & 0x00ff) | byte << 8);
			else
				reg = static_cast<uint16_t>((reg & 0xff00) | (byte & 0x80));
			break;
		}
		}
		index_++;
		return true;
	}
	uint8_t readByte() override
	{
		uint8_t v;
		if (pointer_ == Conf) {
			v = conf_;
		} else {
			uint16_t reg = pointer_ == Temp ? temp_ : pointer_ == Thyst ? thyst_ : tos_;
			v = static_cast<uint8_t>(index_ % 2 == 0 ? reg >> 8 : reg & 0xff);
		}
		index_++;
		return v;
	}
	std::string describe() const override
	{
		bool pin = os_ == bool(conf_ & kOsActiveHigh);
		return fmt::format(
			"LM75 sensor, ambient {} degC; temp 0x{:04x} ({} degC) conf 0x{:02x} thyst 0x{:04x} ({} degC) "
			"tos 0x{:04x} ({} degC) pointer {}; OS {} (pin {})\n",
			ambient_ / 2.0, temp_, celsius(temp_), conf_, thyst_, celsius(thyst_), tos_, celsius(tos_),
			pointer_, os_ ? "active" : "inactive", pin ? "high" : "low");
	}

	/* What the next conversion measures; in shutdown the temp register keeps its last value. */
	void setAmbient(int halfDegrees)
	{
		ambient_ = halfDegrees;
		if (!(conf_ & kShutdown))
			convert();
	}
	uint16_t temp() const { return temp_; }
	static double celsius(uint16_t reg) { return static_cast<int16_t>(reg) / 256.0; }

private:
	enum class Phase { Pointer, Data, Reading };

	void convert()
	{
		temp_ = static_cast<uint16_t>(ambient_ * 128);
		int16_t t = static_cast<int16_t>(temp_), hyst = static_cast<int16_t>(thyst_),
			os = static_cast<int16_t>(tos_);
		if (conf_ & kInterruptMode) {
			/* Interrupt mode: crossing above Tos, then back below Thyst, each latch OS until a read. */
			if (!armedLow_ && t > os) {
				os_ = true;
				armedLow_ = true;
			} else if (armedLow_ && t < hyst) {
				os_ = true;
				armedLow_ = false;
			}
		} else if (t > os) {
			os_ = true;
		} else if (t < hyst) {
			os_ = false;
		}
	}

	int ambient_ = 0;
	uint16_t temp_ = 0;
	uint8_t conf_ = 0;
	uint16_t thyst_ = 75 << 8;
	uint16_t tos_ = 80 << 8;
	uint8_t pointer_ = Temp;
	unsigned index_ = 0;
	Phase phase_ = Phase::Pointer;
	bool os_ = false;
	bool armedLow_ = false;
};

/* One message of a combined transfer; a read's buf is sized to its length and filled by the transfer. */
struct I2cMessage {
	uint16_t addr = 0;
	uint16_t flags = 0;
	std::vector<uint8_t> buf;
};

/* The adapter and the chips on its bus. Copyable, so a transfer can run on a copy and be committed. */
class I2cBus
{
public:
	I2cBus() = default;
	I2cBus(const I2cBus &other) { *this = other; }
	I2cBus &operator=(const I2cBus &other)
	{
		if (this != &other) {
			slaves_.clear();
			for (const auto &[addr, slave] : other.slaves_)
				slaves_[addr] = slave->clone();
		}
		return *this;
	}
	I2cBus(I2cBus &&) = default;
	I2cBus &operator=(I2cBus &&) = default;

	std::map<uint16_t, std::unique_ptr<I2cSlave>> &slaves() { return slaves_; }
	const std::map<uint16_t, std::unique_ptr<I2cSlave>> &slaves() const { return slaves_; }

	/*
	 * i2c_transfer(): messages joined by repeated STARTs and ended by one
	 * STOP. Returns the number of messages, or -ENXIO when an address is not
	 * acknowledged, -EIO when a data byte is not, -EPROTO for an invalid
	 * I2C_M_RECV_LEN count. Messages before a failure keep their effects.
	 */
	int transfer(std::span<I2cMessage> msgs)
	{
		int ret = static_cast<int>(msgs.size());
		for (auto &m : msgs) {
			for (auto &[a, s] : slaves_)
				s->busStart();
			bool read = m.flags & I2C_M_RD;
			I2cSlave *chip = nullptr;
			/* Only 7-bit chips sit on this bus: a 10-bit address phase finds nobody. */
			if (!(m.flags & I2C_M_TEN) && m.addr <= 0x7f) {
				auto it = slaves_.find(m.addr);
				if (it != slaves_.end())
					chip = it->second.get();
			}
			if (!chip || !chip->select(read)) {
				ret = -ENXIO;
				break;
			}
			if (!read) {
				if (!std::all_of(m.buf.begin(), m.buf.end(),
						 [&](uint8_t b) { return chip->writeByte(b); })) {
					ret = -EIO;
					break;
				}
			} else if (m.flags & I2C_M_RECV_LEN) {
				/* buf.size() is the extra byte count (the length byte, maybe PEC); the chip sends the rest's length. */
				uint8_t count = chip->readByte();
				if (count == 0 || count > I2C_SMBUS_BLOCK_MAX) {
					ret = -EPROTO;
					break;
				}
				size_t len = m.buf.size() + count;
				m.buf.assign(len, 0);
				m.buf[0] = count;
				for (size_t i = 1; i < len; i++)
					m.buf[i] = chip->readByte();
			} else {
				for (auto &b : m.buf)
					b = chip->readByte();
			}
		}
		for (auto &[a, s] : slaves_)
			s->busStop();
		return ret;
	}

	/* i2c_smbus_xfer() emulated with I2C messages, as the i2c core does for a plain I2C adapter. */
	int smbus(uint16_t addr, bool ten, bool usePec, uint8_t readWrite, uint8_t command, uint32_t size,
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

private:
	std::map<uint16_t, std::unique_ptr<I2cSlave>> slaves_;
};

/* What an open file of i2c-dev holds: the i2c_client it talks as. */
struct I2cClient final : FileState {
	uint16_t addr = 0;
	bool tenBit = false;
	bool pec = false;
};

class I2cModel final : public Model
{
public:
	explicit I2cModel(I2cBus bus) : bus_(std::move(bus)) {}

	int open(OpenFile &f) override
	{
		f.state = std::make_unique<I2cClient>();
		return 0;
	}

	/* read(): one I2C read message from the client's address (i2c_master_recv). */
	ssize_t read(OpenFile &f, std::span<std::byte> out) override
	{
		auto &c = f.stateAs<I2cClient>();
		size_t n = std::min<size_t>(out.size(), kMaxMessage);
		I2cMessage m{ c.addr, static_cast<uint16_t>(I2C_M_RD | (c.tenBit ? I2C_M_TEN : 0)),
			      std::vector<uint8_t>(n) };
		int ret = bus_.transfer({ &m, 1 });
		if (ret < 0)
			return ret;
		std::memcpy(out.data(), m.buf.data(), n);
		return static_cast<ssize_t>(n);
	}

	/* write(): one I2C write message to the client's address (i2c_master_send). */
	ssize_t write(OpenFile &f, std::span<const std::byte> in) override
	{
		auto &c = f.stateAs<I2cClient>();
		size_t n = std::min<size_t>(in.size(), kMaxMessage);
		const auto *p = reinterpret_cast<const uint8_t *>(in.data());
		I2cMessage m{ c.addr, static_cast<uint16_t>(c.tenBit ? I2C_M_TEN : 0), std::vector<uint8_t>(p, p + n) };
		int ret = bus_.transfer({ &m, 1 });
		return ret < 0 ? ret : static_cast<ssize_t>(n);
	}

	IoctlResult ioctl(OpenFile &f, IoctlCall &call) override
	{
		auto &c = f.stateAs<I2cClient>();
		uint64_t arg = call.arg();
		switch (call.cmd()) {
		case I2C_SLAVE:
		case I2C_SLAVE_FORCE:
			/* No kernel driver binds our chips, so I2C_SLAVE never finds the address busy. */
			if (arg > 0x3ff || (!c.tenBit && arg > 0x7f))
				return IoctlResult::error(-EINVAL);
			c.addr = static_cast<uint16_t>(arg);
			return call.done(0);
		case I2C_TENBIT:
			c.tenBit = arg != 0;
			return call.done(0);
		case I2C_PEC:
			c.pec = arg != 0;
			return call.done(0);
		case I2C_FUNCS:
			return call.replyArg(kFunctionality); /* an unsigned long */
		case I2C_RDWR:
			return rdwr(call);
		case I2C_SMBUS:
			return smbus(c, call);
		case I2C_RETRIES:
			if (arg > INT_MAX)
				return IoctlResult::error(-EINVAL);
			retries_ = static_cast<int>(arg);
			return call.done(0);
		case I2C_TIMEOUT:
			if (arg > INT_MAX)
				return IoctlResult::error(-EINVAL);
			timeoutMs_ = arg * 10; /* historically in units of 10 ms */
			return call.done(0);
		default:
			return IoctlResult::error(-ENOTTY);
		}
	}

	/* i2c-dev has no poll method: the VFS default says readable and writable. */
	uint32_t poll(const OpenFile &) override { return POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM; }

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		return runInjectVerb(*this, kVerbs, args, reply);
	}

	static const InjectVerb<I2cModel> kVerbs[3];

private:
	int injectSlaves(const std::vector<std::string> &, std::string &reply)
	{
		reply = fmt::format("adapter: functionality 0x{:08x}, retries {}, timeout {} ms\n", kFunctionality,
				    retries_, timeoutMs_);
		for (const auto &[addr, s] : bus_.slaves())
			reply += fmt::format("0x{:02x} {}\n", addr, s->kind());
		return 0;
	}

	/* The chip of the kind the verb is about (temp: lm75, eeprom: eeprom) at the address args[1] names. */
	int injectChip(const std::vector<std::string> &args, std::string &reply, I2cSlave *&chip)
	{
		const std::string &verb = args[0];
		auto addr = args.size() > 1 ? parseUnsigned(args[1]) : std::nullopt;
		if (!addr) {
			reply = fmt::format("{} needs a slave address (e.g. {} 0x{:02x})", verb, verb,
					    verb == "temp" ? 0x48 : 0x50);
			return -EINVAL;
		}
		auto it = bus_.slaves().find(static_cast<uint16_t>(*addr));
		const char *want = verb == "temp" ? "lm75" : "eeprom";
		if (it == bus_.slaves().end() || it->second->kind() != std::string_view(want)) {
			reply = fmt::format("no {} at 0x{:02x}", want, *addr);
			return -ENODEV;
		}
		chip = it->second.get();
		return 0;
	}

	IoctlResult rdwr(IoctlCall &call)
	{
		auto hdr = call.argIn<UserRdwr>();
		if (!hdr)
			return call.done();
		if (!hdr->msgs || hdr->nmsgs == 0 || hdr->nmsgs > I2C_RDWR_IOCTL_MAX_MSGS)
			return IoctlResult::error(-EINVAL);
		auto raw = call.readUser(hdr->msgs, hdr->nmsgs * sizeof(UserI2cMsg));
		if (!raw)
			return call.done();
		std::vector<UserI2cMsg> user(hdr->nmsgs);
		std::memcpy(user.data(), raw->data(), raw->size());

		/*
		 * Like i2c-dev, copy every buffer in (reads too, so a bad pointer
		 * fails before the bus moves), checking each message in order: an
		 * error found at message i is reported only once the buffers before
		 * it were carried, as the kernel would have faulted on them first.
		 */
		std::vector<I2cMessage> msgs(user.size());
		std::vector<std::vector<uint8_t>> callerBytes(user.size());
		for (size_t i = 0; i < user.size(); i++) {
			const UserI2cMsg &u = user[i];
			if (u.len > kMaxMessage)
				return call.needsRetry() ? call.done() : IoctlResult::error(-EINVAL);
			msgs[i].addr = u.addr;
			msgs[i].flags = u.flags;
			const uint8_t *p = nullptr;
			if (u.len) {
				auto data = call.readUser(u.buf, u.len);
				if (!data)
					continue;
				p = reinterpret_cast<const uint8_t *>(data->data());
				msgs[i].buf.assign(p, p + u.len);
				if (u.flags & I2C_M_RD)
					callerBytes[i] = msgs[i].buf;
			}
			if (u.flags & I2C_M_RECV_LEN) {
				if (!(u.flags & I2C_M_RD) || !u.len || p[0] < 1 || u.len < p[0] + I2C_SMBUS_BLOCK_MAX)
					return call.needsRetry() ? call.done() : IoctlResult::error(-EINVAL);
				msgs[i].buf.resize(p[0]); /* the extra bytes; the bus adds the count it receives */
			}
		}
		/*
		 * The read buffers go back whole: the bytes the transfer filled,
		 * then what the caller had there (an I2C_M_RECV_LEN message may
		 * fill less). Their ranges are known now, so they are declared in
		 * the round that fetches the buffers, before the data exists.
		 */
		if (call.needsRetry()) {
			for (const auto &u : user)
				if ((u.flags & I2C_M_RD) && u.len)
					call.writeUser(u.buf, std::vector<std::byte>(u.len));
			return call.done();
		}

		I2cBus bus = bus_;
		int ret = bus.transfer(msgs);
		if (ret >= 0)
			for (size_t i = 0; i < user.size(); i++)
				if ((user[i].flags & I2C_M_RD) && user[i].len) {
					std::vector<uint8_t> out = callerBytes[i];
					std::copy(msgs[i].buf.begin(), msgs[i].buf.end(), out.begin());
					call.writeUser(user[i].buf, std::as_bytes(std::span(out)));
				}
		/* Nothing changes until a round carries the read buffers back. */
		if (call.needsRetry())
			return call.done();
		bus_ = std::move(bus);
		return call.done(ret);
	}

	IoctlResult smbus(const I2cClient &c, IoctlCall &call)
	{
		auto a = call.argIn<UserSmbus>();
		if (!a)
			return call.done();
		uint32_t size = a->size;
		switch (size) {
		case I2C_SMBUS_QUICK:
		case I2C_SMBUS_BYTE:
		case I2C_SMBUS_BYTE_DATA:
		case I2C_SMBUS_WORD_DATA:
		case I2C_SMBUS_PROC_CALL:
		case I2C_SMBUS_BLOCK_DATA:
		case I2C_SMBUS_I2C_BLOCK_BROKEN:
		case I2C_SMBUS_I2C_BLOCK_DATA:
		case I2C_SMBUS_BLOCK_PROC_CALL:
			break;
		default:
			return IoctlResult::error(-EINVAL);
		}
		if (a->readWrite != I2C_SMBUS_READ && a->readWrite != I2C_SMBUS_WRITE)
			return IoctlResult::error(-EINVAL);
		bool read = a->readWrite == I2C_SMBUS_READ;

		std::array<uint8_t, kSmbusDataSize> data{};
		size_t dataSize = 0;
		bool usesData = !(size == I2C_SMBUS_QUICK || (size == I2C_SMBUS_BYTE && !read));
		bool answers = usesData && (size == I2C_SMBUS_PROC_CALL || size == I2C_SMBUS_BLOCK_PROC_CALL || read);
		if (usesData) {
			if (!a->data)
				return IoctlResult::error(-EINVAL);
			dataSize = (size == I2C_SMBUS_BYTE || size == I2C_SMBUS_BYTE_DATA)	  ? 1
				   : (size == I2C_SMBUS_WORD_DATA || size == I2C_SMBUS_PROC_CALL) ? 2
												  : kSmbusDataSize;
			if (size == I2C_SMBUS_PROC_CALL || size == I2C_SMBUS_BLOCK_PROC_CALL ||
			    size == I2C_SMBUS_I2C_BLOCK_DATA || !read) {
				auto in = call.readUser(a->data, dataSize);
				if (!in) {
					/* Ask for the room of the answer in the same round. */
					if (answers)
						call.writeUser(a->data, std::vector<std::byte>(dataSize));
					return call.done();
				}
				std::memcpy(data.data(), in->data(), dataSize);
			}
		}
		if (size == I2C_SMBUS_I2C_BLOCK_BROKEN) {
			/* The old i2c block convention: a read asks for 32 bytes. */
			size = I2C_SMBUS_I2C_BLOCK_DATA;
			if (read)
				data[0] = I2C_SMBUS_BLOCK_MAX;
		}

		I2cBus bus = bus_;
		int ret = bus.smbus(c.addr, c.tenBit, c.pec, a->readWrite, a->command, size, data);
		if (ret == 0 && answers)
			call.writeUser(a->data, std::as_bytes(std::span(data).first(dataSize)));
		if (call.needsRetry())
			return call.done();
		bus_ = std::move(bus);
		return call.done(ret);
	}

	int injectTemp(const std::vector<std::string> &args, std::string &reply)
	{
		I2cSlave *slave = nullptr;
		if (int err = injectChip(args, reply, slave))
			return err;
		auto &chip = static_cast<Lm75 &>(*slave);
		if (args.size() == 2) {
			reply = chip.describe();
			return 0;
		}
		auto celsius = args.size() == 3 ? parseReal(args[2], -55.0, 125.0) : std::nullopt;
		if (!celsius) {
			reply = "temp ADDR CELSIUS: a temperature from -55 to 125 (the LM75's range, 0.5 degC steps)";
			return -EINVAL;
		}
		chip.setAmbient(static_cast<int>(std::floor(*celsius * 2)));
		reply = chip.describe();
		return 0;
	}

	int injectEeprom(const std::vector<std::string> &args, std::string &reply)
	{
		I2cSlave *slave = nullptr;
		if (int err = injectChip(args, reply, slave))
			return err;
		auto &chip = static_cast<Eeprom24c02 &>(*slave);
		std::string op = args.size() > 2 ? args[2] : "";
		auto byteArg = [&](size_t i) -> std::optional<uint8_t> {
			auto v = i < args.size() ? parseUnsigned(args[i], 0xff) : std::nullopt;
			if (!v)
				return std::nullopt;
			return static_cast<uint8_t>(*v);
		};
		if (op == "dump" && args.size() == 3) {
			reply = chip.describe();
			return 0;
		}
		if (op == "fill" && args.size() == 4 && byteArg(3)) {
			chip.fill(*byteArg(3));
			reply = fmt::format("filled 256 bytes with 0x{:02x}", *byteArg(3));
			return 0;
		}
		if (op == "write" && args.size() >= 5 && byteArg(3)) {
			unsigned at = *byteArg(3);
			for (size_t i = 4; i < args.size(); i++) {
				auto v = byteArg(i);
				if (!v) {
					reply = fmt::format("'{}' is not a byte", args[i]);
					return -EINVAL;
				}
				chip.poke(static_cast<uint8_t>(at++), *v);
			}
			reply = fmt::format("wrote {} bytes at 0x{:02x}", args.size() - 4, *byteArg(3));
			return 0;
		}
		reply = "eeprom ADDR dump | eeprom ADDR fill BYTE | eeprom ADDR write OFFSET BYTE...";
		return -EINVAL;
	}

	I2cBus bus_;
	int retries_ = 0;
	uint64_t timeoutMs_ = 1000;
};

const InjectVerb<I2cModel> I2cModel::kVerbs[3] = {
	{ "temp", "ADDR [CELSIUS]",
	  "set the temperature the LM75 at ADDR measures (temp ADDR alone shows its registers)",
	  &I2cModel::injectTemp },
	{ "eeprom", "ADDR dump|fill BYTE|write OFFSET BYTE...",
	  "show the EEPROM at ADDR, set every byte, or set bytes from OFFSET on", &I2cModel::injectEeprom },
	{ "slaves", "", "list the chips on the bus", &I2cModel::injectSlaves },
};

/* "eeprom@0x50+lm75@0x48" -> the bus; false with a message on a bad spec. */
bool parseSlaves(const std::string &spec, uint8_t fill, int halfDegrees, I2cBus &bus, std::string &error)
{
	if (spec.empty() || spec == "none")
		return true;
	size_t start = 0;
	while (start <= spec.size()) {
		size_t end = spec.find('+', start);
		std::string item = spec.substr(start, end == std::string::npos ? std::string::npos : end - start);
		size_t at = item.find('@');
		auto parsed = at == std::string::npos ? std::nullopt : parseUnsigned(item.substr(at + 1));
		std::string kind = item.substr(0, at);
		if (!parsed) {
			error = fmt::format("'{}' is not KIND@ADDR (e.g. eeprom@0x50)", item);
			return false;
		}
		uint64_t addr = *parsed;
		if (addr < 0x03 || addr > 0x77) {
			error = fmt::format("address 0x{:02x} of '{}' is outside 0x03..0x77 (7-bit, not reserved)",
					    addr, item);
			return false;
		}
		if (bus.slaves().count(static_cast<uint16_t>(addr))) {
			error = fmt::format("two chips at 0x{:02x}", addr);
			return false;
		}
		std::unique_ptr<I2cSlave> chip;
		if (kind == "eeprom" || kind == "24c02")
			chip = std::make_unique<Eeprom24c02>(fill);
		else if (kind == "lm75")
			chip = std::make_unique<Lm75>(halfDegrees);
		else {
			error = fmt::format("unknown chip '{}' (chips: eeprom (24c02), lm75)", kind);
			return false;
		}
		bus.slaves()[static_cast<uint16_t>(addr)] = std::move(chip);
		if (end == std::string::npos)
			break;
		start = end + 1;
	}
	return true;
}

} // namespace

void registerI2cModel(ModelRegistry &registry)
{
	registry.add({ "i2c", "i2c-dev adapter with emulated chips on its bus (24C02 EEPROM, LM75 temperature sensor)",
		       "slaves=KIND@ADDR+...  chips on the bus: eeprom (24C02) and lm75 at 7-bit addresses (default "
		       "eeprom@0x50+lm75@0x48; none: empty bus)\n"
		       "eeprom_fill=BYTE      initial EEPROM contents (default 0xff, erased)\n"
		       "temp=CELSIUS          initial LM75 temperature, -55 to 125 (default 25)\n",
		       [](ModelOptions &opts, DeviceContext &) -> std::unique_ptr<Model> {
			       std::string spec = opts.string("slaves", "eeprom@0x50+lm75@0x48");
			       auto fill = static_cast<uint8_t>(opts.number("eeprom_fill", 0xff, 0, 0xff));
			       double celsius = opts.real("temp", 25, -55, 125);
			       if (!opts.error().empty())
				       return nullptr;
			       I2cBus bus;
			       std::string error;
			       if (!parseSlaves(spec, fill, static_cast<int>(std::floor(celsius * 2)), bus, error)) {
				       opts.fail("slaves", error);
				       return nullptr;
			       }
			       return std::make_unique<I2cModel>(std::move(bus));
		       },
		       injectHelp(I2cModel::kVerbs) });
}

} // namespace devemu
