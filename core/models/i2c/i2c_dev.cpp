// SPDX-License-Identifier: MIT
// i2c: the i2c-dev surface (<linux/i2c-dev.h>: I2C_SLAVE, I2C_RDWR, I2C_SMBUS, read/write) over the bus; registration.
#include "eeprom_24c02.h"
#include "i2c_bus.h"
#include "i2c_user.h"
#include "lm75.h"

#include "python/python_loader.h"

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
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace devemu {

namespace {

/* i2c-dev's limit for one message and for one read()/write(). */
constexpr unsigned kMaxMessage = 8192;
/* A plain I2C master: SMBus is emulated on top of I2C messages by the i2c core. */
constexpr uint64_t kFunctionality = I2C_FUNC_I2C | I2C_FUNC_10BIT_ADDR | I2C_FUNC_SMBUS_EMUL_ALL;

/* A chip written in Python, made when the device starts (a factory acquires nothing). */
struct PythonChipSpec {
	uint16_t addr = 0;
	std::string script;
	std::string cls;
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
	I2cModel(DeviceContext &ctx, I2cBus bus, std::vector<PythonChipSpec> pythonChips)
		: ctx_(ctx), bus_(std::move(bus)), pythonChips_(std::move(pythonChips))
	{}

	int start(std::string &error) override
	{
		if (pythonChips_.empty())
			return 0;
		python::Backend *backend = python::loadBackend(error);
		if (!backend)
			return -ENOENT;
		for (const auto &spec : pythonChips_) {
			auto chip = backend->makeI2cChip(ctx_.strand(), spec.script, spec.cls, ctx_.name(), spec.addr,
							 error);
			if (!chip) {
				error = fmt::format("the chip at 0x{:02x}: {}", spec.addr, error);
				return -EINVAL;
			}
			bus_.slaves()[spec.addr] = std::move(chip);
		}
		return 0;
	}

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
		case I2C_FUNCS: /* an unsigned long: 4 bytes for a 32-bit caller */
			return call.compat() ? call.replyArg(static_cast<uint32_t>(kFunctionality))
					     : call.replyArg(kFunctionality);
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

	static const InjectVerb<I2cModel> kVerbs[4];

private:
	int injectSlaves(const std::vector<std::string> &, std::string &reply)
	{
		reply = fmt::format("adapter: functionality 0x{:08x}, retries {}, timeout {} ms\n", kFunctionality,
				    retries_, timeoutMs_);
		for (const auto &[addr, s] : bus_.slaves())
			reply += fmt::format("0x{:02x} {}\n", addr, s->kind());
		return 0;
	}

	/* chip ADDR: the chip's description; chip ADDR ARGS...: the chip's own verbs (a Python chip's inject()). */
	int injectChipVerb(const std::vector<std::string> &args, std::string &reply)
	{
		I2cSlave *chip = nullptr;
		if (int err = injectChip(args, reply, chip))
			return err;
		if (args.size() == 2) {
			reply = chip->describe();
			return 0;
		}
		return chip->inject({ args.begin() + 2, args.end() }, reply);
	}

	/*
	 * The chip at the address args[1] names, of the kind the verb is about
	 * (temp: lm75, eeprom: eeprom; chip: any).
	 */
	int injectChip(const std::vector<std::string> &args, std::string &reply, I2cSlave *&chip)
	{
		const std::string &verb = args[0];
		auto addr = args.size() > 1 ? parseUnsigned(args[1]) : std::nullopt;
		if (!addr) {
			reply = fmt::format("{} needs a slave address (e.g. {} 0x{:02x})", verb, verb,
					    verb == "temp"   ? 0x48
					    : verb == "chip" ? 0x20
							     : 0x50);
			return -EINVAL;
		}
		auto it = bus_.slaves().find(static_cast<uint16_t>(*addr));
		const char *want = verb == "temp" ? "lm75" : verb == "eeprom" ? "eeprom" : nullptr;
		if (it == bus_.slaves().end() || (want && it->second->kind() != std::string_view(want))) {
			reply = fmt::format("no {} at 0x{:02x}", want ? want : "chip", *addr);
			return -ENODEV;
		}
		chip = it->second.get();
		return 0;
	}

	IoctlResult rdwr(IoctlCall &call)
	{
		auto hdr = rdwrArg(call);
		if (!hdr)
			return call.done();
		if (!hdr->msgs || hdr->nmsgs == 0 || hdr->nmsgs > I2C_RDWR_IOCTL_MAX_MSGS)
			return IoctlResult::error(-EINVAL);
		auto messages = rdwrMessages(call, hdr->msgs, hdr->nmsgs);
		if (!messages)
			return call.done();
		const std::vector<UserI2cMsg> &user = *messages;

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
		auto a = smbusArg(call);
		if (!a)
			return call.done();
		uint32_t size = a->size;
		if (a->readWrite != I2C_SMBUS_READ && a->readWrite != I2C_SMBUS_WRITE)
			return IoctlResult::error(-EINVAL);
		bool read = a->readWrite == I2C_SMBUS_READ;
		auto use = smbusDataUse(size, read);
		if (!use)
			return IoctlResult::error(-EINVAL);

		std::array<uint8_t, kSmbusDataSize> data{};
		size_t dataSize = use->size;
		bool answers = use->answers;
		if (dataSize) {
			if (!a->data)
				return IoctlResult::error(-EINVAL);
			if (use->readsInput) {
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

		/* The transfer runs once, in a round that carries the answer's room too (a Python chip is not transactional). */
		if (answers && !call.canWriteUser(a->data, dataSize)) {
			call.writeUser(a->data, std::vector<std::byte>(dataSize));
			return call.done();
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

	DeviceContext &ctx_;
	I2cBus bus_;
	std::vector<PythonChipSpec> pythonChips_;
	int retries_ = 0;
	uint64_t timeoutMs_ = 1000;
};

const InjectVerb<I2cModel> I2cModel::kVerbs[4] = {
	{ "temp", "ADDR [CELSIUS]",
	  "set the temperature the LM75 at ADDR measures (temp ADDR alone shows its registers)",
	  &I2cModel::injectTemp },
	{ "eeprom", "ADDR dump|fill BYTE|write OFFSET BYTE...",
	  "show the EEPROM at ADDR, set every byte, or set bytes from OFFSET on", &I2cModel::injectEeprom },
	{ "slaves", "", "list the chips on the bus", &I2cModel::injectSlaves },
	{ "chip", "ADDR [ARGS...]",
	  "show the chip at ADDR, or pass ARGS to its own verbs (a Python chip's inject(*ARGS))",
	  &I2cModel::injectChipVerb },
};

/*
 * "eeprom@0x50+lm75@0x48+python:FILE:CLASS@0x20" -> the bus and the Python
 * chips to make at start; false with a message on a bad spec.
 */
bool parseSlaves(const std::string &spec, uint8_t fill, int halfDegrees, I2cBus &bus,
		 std::vector<PythonChipSpec> &pythonChips, std::string &error)
{
	if (spec.empty() || spec == "none")
		return true;
	size_t start = 0;
	while (start <= spec.size()) {
		size_t end = spec.find('+', start);
		std::string item = spec.substr(start, end == std::string::npos ? std::string::npos : end - start);
		size_t at = item.rfind('@');
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
		auto taken = [&](uint16_t a) {
			return bus.slaves().count(a) ||
			       std::any_of(pythonChips.begin(), pythonChips.end(),
					   [&](const PythonChipSpec &p) { return p.addr == a; });
		};
		if (taken(static_cast<uint16_t>(addr))) {
			error = fmt::format("two chips at 0x{:02x}", addr);
			return false;
		}
		std::unique_ptr<I2cSlave> chip;
		if (kind == "eeprom" || kind == "24c02")
			chip = std::make_unique<Eeprom24c02>(fill);
		else if (kind == "lm75")
			chip = std::make_unique<Lm75>(halfDegrees);
		else if (kind.rfind("python:", 0) == 0 && kind.size() > 7) {
			PythonChipSpec python{ static_cast<uint16_t>(addr), {}, {} };
			if (!python::parseScriptAndClass(kind.substr(7), "Chip", python.script, python.cls, error)) {
				error = fmt::format("'{}': {}", item, error);
				return false;
			}
			pythonChips.push_back(std::move(python));
		} else {
			error = fmt::format("unknown chip '{}' (chips: eeprom (24c02), lm75, python:FILE[:CLASS])",
					    kind);
			return false;
		}
		if (chip)
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
		       "slaves=KIND@ADDR+...  chips on the bus: eeprom (24C02), lm75 and python:FILE[:CLASS] (a chip "
		       "written in Python, class Chip by default) at 7-bit addresses (default eeprom@0x50+lm75@0x48; "
		       "none: empty bus)\n"
		       "eeprom_fill=BYTE      initial EEPROM contents (default 0xff, erased)\n"
		       "temp=CELSIUS          initial LM75 temperature, -55 to 125 (default 25)\n",
		       [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			       std::string spec = opts.string("slaves", "eeprom@0x50+lm75@0x48");
			       auto fill = static_cast<uint8_t>(opts.number("eeprom_fill", 0xff, 0, 0xff));
			       double celsius = opts.real("temp", 25, -55, 125);
			       if (!opts.error().empty())
				       return nullptr;
			       I2cBus bus;
			       std::vector<PythonChipSpec> pythonChips;
			       std::string error;
			       if (!parseSlaves(spec, fill, static_cast<int>(std::floor(celsius * 2)), bus, pythonChips,
						error)) {
				       opts.fail("slaves", error);
				       return nullptr;
			       }
			       return std::make_unique<I2cModel>(ctx, std::move(bus), std::move(pythonChips));
		       },
		       injectHelp(I2cModel::kVerbs) });
}

} // namespace devemu
