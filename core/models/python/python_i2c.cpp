// SPDX-License-Identifier: MIT
// python: an I2C chip written in Python (i2c `slaves=...+python:FILE[:CLASS]@ADDR`) and the `chip` handle it gets.
#include "python_i2c.h"

#include "devemu/log.h"

#include <pybind11/functional.h>

#include <fmt/core.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace devemu::python {

namespace {

class ChipCode;

/* What a Python chip gets as `chip`: its address, timers, the log. Dead once the chip is gone. */
struct ChipHandle {
	std::weak_ptr<ChipCode> code;
	std::string name;
	uint16_t address = 0;
};

/*
 * The Python object behind one chip address, shared by every copy of the bus:
 * a Python chip's state lives in Python, so it is not transactional (the i2c
 * model runs a transfer once, in the ioctl round that carries all its memory).
 * Each call holds the GIL and the call budget; a raise or a wrong return is
 * logged with its traceback and marks a fault, which fails the transfer with EIO.
 */
class ChipCode final : public std::enable_shared_from_this<ChipCode>
{
public:
	ChipCode(const Strand &strand, std::string device, std::string script, std::string cls, uint16_t addr)
		: device_(std::move(device)), label_(fmt::format("python:{}:{}", script, cls)), cls_(std::move(cls)),
		  addr_(addr), timers_(strand, device_)
	{}

	~ChipCode()
	{
		py::gil_scoped_acquire gil;
		obj_.reset();
		handle_.reset();
	}

	bool instantiate(const py::object &cls, std::string &error)
	{
		handle_ = keep(py::cast(ChipHandle{ weak_from_this(), device_, addr_ }));
		obj_ = construct(cls, cls_ + "(chip)", handle_, error);
		return obj_ != nullptr;
	}

	const std::string &label() const { return label_; }

	/* obj.method(args...) with the GIL held; nullopt after a raise (logged, fault marked) or without the method. */
	template<typename... Args>
	std::optional<py::object> call(const char *method, Args &&...args)
	{
		if (!py::hasattr(*obj_, method))
			return std::nullopt;
		try {
			return obj_->attr(method)(std::forward<Args>(args)...);
		} catch (py::error_already_set &e) {
			logTraceback(device_, what(method), e);
			fault_ = true;
			return std::nullopt;
		}
	}

	/* An ACK from a method's result: None or a true value ACK, False NAKs; anything else is a fault. */
	bool ack(const char *method, const std::optional<py::object> &r)
	{
		if (!r || r->is_none())
			return !fault_;
		if (py::isinstance<py::bool_>(*r))
			return r->cast<bool>();
		wrongReturn(method, "True (ACK), False (NAK) or None (ACK)");
		return false;
	}

	bool select(bool read)
	{
		InPython inPython;
		return ack("select", call("select", read));
	}

	bool writeByte(uint8_t byte)
	{
		InPython inPython;
		return ack("write", call("write", byte));
	}

	uint8_t readByte()
	{
		InPython inPython;
		auto r = call("read");
		if (!r) {
			if (!fault_) /* no raise: the class has no read() */
				wrongReturn("read", "a byte (the class has no read())");
			return 0xff;
		}
		if (py::isinstance<py::int_>(*r) && !py::isinstance<py::bool_>(*r)) {
			long v = r->cast<long>();
			if (v >= 0 && v <= 0xff)
				return static_cast<uint8_t>(v);
		}
		wrongReturn("read", "an int from 0 to 255");
		return 0xff;
	}

	void busEvent(const char *method)
	{
		InPython inPython;
		call(method);
	}

	std::string describe()
	{
		InPython inPython;
		auto r = call("describe");
		if (r && py::isinstance<py::str>(*r))
			return r->cast<std::string>();
		return label_ + "\n";
	}

	int inject(const std::vector<std::string> &args, std::string &reply)
	{
		InPython inPython;
		if (!py::hasattr(*obj_, "inject")) {
			reply = fmt::format("{} has no inject() method: the chip at 0x{:02x} takes no verbs", cls_,
					    addr_);
			return -EINVAL;
		}
		py::tuple pyArgs(args.size());
		for (size_t i = 0; i < args.size(); i++)
			pyArgs[i] = py::str(args[i]);
		try {
			py::object r = obj_->attr("inject")(*pyArgs);
			reply = r.is_none() ? std::string() : py::str(r).cast<std::string>();
			return 0;
		} catch (py::error_already_set &e) {
			/* A ValueError is the chip refusing the verb: its message is the reply. */
			if (e.matches(PyExc_ValueError)) {
				reply = py::str(e.value()).cast<std::string>();
				return -EINVAL;
			}
			logTraceback(device_, what("inject"), e);
			reply = fmt::format("{}.inject() raised (the traceback is in the daemon's log)", cls_);
			return -EIO;
		}
	}

	bool takeFault() { return std::exchange(fault_, false); }

	std::shared_ptr<StrandTimer> after(double seconds, py::function fn)
	{
		return timers_.after(seconds, std::move(fn));
	}

private:
	std::string what(const char *method) const { return fmt::format("chip 0x{:02x} {}.{}()", addr_, cls_, method); }

	void wrongReturn(const char *method, const char *expected)
	{
		DEVEMU_LOG(Error, device_, "python: {} must return {}; the transfer fails with EIO", what(method),
			   expected);
		fault_ = true;
	}

	std::string device_;
	std::string label_;
	std::string cls_;
	uint16_t addr_;
	Timers timers_;
	PyRef handle_;
	PyRef obj_;
	bool fault_ = false;
};

/* The bus's view of a Python chip; its copies (one per transfer) share the Python object. */
class PythonI2cChip final : public I2cSlave
{
public:
	explicit PythonI2cChip(std::shared_ptr<ChipCode> code) : code_(std::move(code)) {}

	std::unique_ptr<I2cSlave> clone() const override { return std::make_unique<PythonI2cChip>(code_); }
	const char *kind() const override { return code_->label().c_str(); }
	void busStart() override { code_->busEvent("start"); }
	bool select(bool read) override { return code_->select(read); }
	bool writeByte(uint8_t byte) override { return code_->writeByte(byte); }
	uint8_t readByte() override { return code_->readByte(); }
	void busStop() override { code_->busEvent("stop"); }
	std::string describe() const override { return code_->describe(); }
	bool takeFault() override { return code_->takeFault(); }
	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		return code_->inject(args, reply);
	}

private:
	std::shared_ptr<ChipCode> code_;
};

ChipCode &alive(ChipHandle &h)
{
	auto code = h.code.lock();
	if (!code)
		throw std::runtime_error(fmt::format("chip 0x{:02x} of '{}' is gone", h.address, h.name));
	return *code; /* kept alive by the bus, which is calling us or owns the strand we run on */
}

} // namespace

std::unique_ptr<I2cSlave> makeI2cChip(const py::object &cls, const Strand &strand, const std::string &script,
				      const std::string &clsName, const std::string &device, uint16_t addr,
				      std::string &error)
{
	auto code = std::make_shared<ChipCode>(strand, device, script, clsName, addr);
	if (!code->instantiate(cls, error))
		return nullptr;
	return std::make_unique<PythonI2cChip>(std::move(code));
}

void bindI2cChip(py::module_ &m)
{
	py::class_<ChipHandle>(m, "Chip")
		.def_readonly("name", &ChipHandle::name, "the i2c device's name (e.g. i2c-7)")
		.def_readonly("address", &ChipHandle::address, "the chip's 7-bit address")
		.def(
			"call_later",
			[](ChipHandle &h, double seconds, py::function fn) { return alive(h).after(seconds, fn); },
			"runs fn() on the device's strand after seconds; returns a Timer")
		.def("log", [](ChipHandle &h, const std::string &text) {
			DEVEMU_LOG(Info, h.name, "python: chip 0x{:02x}: {}", h.address, text);
		});
}

} // namespace devemu::python
