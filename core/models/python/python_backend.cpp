// SPDX-License-Identifier: MIT
// python: the `python` model, the serial `far=python:` line backend, the backend that makes them (and I2C chips) and the _devemu module.
#include "interpreter.h"
#include "python_i2c.h"
#include "python_loader.h"

#include "devemu/caller.h"
#include "devemu/log.h"
#include "devemu/strand_timer.h"

#include <pybind11/embed.h>
#include <pybind11/functional.h>

#include <fmt/core.h>

#include <fcntl.h>
#include <linux/serial_reg.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <tuple>

namespace devemu::python {

namespace {

class PythonModel;

/* What a Python device gets as `device`: notify, timers, status words. Dead once the model is gone. */
struct DeviceHandle {
	PythonModel *model = nullptr;
	std::string name;
};

/* An open file, as Python sees it: attributes of its own may be set on it (per-open state). */
struct PyFile {
	uint32_t fh = 0;
	uint32_t flags = 0;
	pid_t pid = 0;
	uid_t uid = 0;
	gid_t gid = 0;
	bool compat = false;
	/* The caller of the current request: see OpenFile::callerPid, callerCaps and devemu/caller.h. */
	pid_t callerPid = 0;
	std::optional<uint64_t> callerCaps;
};

struct PyFileState final : FileState {
	PyRef file;
};

/* One ioctl round, valid while the Python method runs. */
struct PyIoctl {
	IoctlCall *call = nullptr;
	IoctlCall &get() const
	{
		if (!call)
			throw std::runtime_error("this ioctl call is over");
		return *call;
	}
};

class PythonModel final : public Model
{
public:
	PythonModel(DeviceContext &ctx, std::string cls)
		: ctx_(ctx), cls_(std::move(cls)), timers_(ctx.strand(), ctx.name())
	{}

	~PythonModel() override
	{
		py::gil_scoped_acquire gil;
		if (handle_)
			py::cast<DeviceHandle &>(*handle_).model = nullptr;
		obj_.reset();
		handle_.reset();
	}

	/* With the GIL held. */
	bool instantiate(py::object cls, std::string &error)
	{
		handle_ = keep(py::cast(DeviceHandle{ this, ctx_.name() }));
		obj_ = construct(cls, cls_ + "(device)", handle_, error);
		return obj_ != nullptr;
	}

	int open(OpenFile &f) override
	{
		InPython inPython;
		auto state = std::make_unique<PyFileState>();
		state->file = keep(py::cast(PyFile{}));
		sync(f, *state->file);
		int ret = 0;
		if (py::hasattr(*obj_, "open")) {
			try {
				py::object r = obj_->attr("open")(*state->file);
				ret = r.is_none() ? 0 : -std::abs(r.cast<int>());
			} catch (py::error_already_set &e) {
				ret = errnoOf(ctx_.name(), cls_ + ".open()", e);
				if (ret == -EAGAIN)
					ret = -EBUSY;
			}
		}
		if (ret == 0)
			f.state = std::move(state);
		return ret;
	}

	void release(OpenFile &f) override
	{
		InPython inPython;
		if (!f.state || !py::hasattr(*obj_, "release"))
			return;
		try {
			obj_->attr("release")(file(f));
		} catch (py::error_already_set &e) {
			errnoOf(ctx_.name(), cls_ + ".release()", e);
		}
	}

	ssize_t read(OpenFile &f, std::span<std::byte> out) override
	{
		InPython inPython;
		if (!py::hasattr(*obj_, "read"))
			return -EINVAL;
		try {
			py::object r = obj_->attr("read")(file(f), out.size());
			if (r.is_none())
				return -EAGAIN;
			py::buffer_info data = py::buffer(r).request();
			size_t n = std::min(out.size(), static_cast<size_t>(data.size * data.itemsize));
			std::memcpy(out.data(), data.ptr, n);
			return static_cast<ssize_t>(n);
		} catch (py::error_already_set &e) {
			return errnoOf(ctx_.name(), cls_ + ".read()", e);
		} catch (std::exception &e) {
			DEVEMU_LOG(Error, ctx_.name(), "python: {}.read() must return bytes: {}", cls_, e.what());
			return -EIO;
		}
	}

	ssize_t write(OpenFile &f, std::span<const std::byte> in) override
	{
		InPython inPython;
		if (!py::hasattr(*obj_, "write"))
			return -EINVAL;
		try {
			py::bytes data(reinterpret_cast<const char *>(in.data()), in.size());
			py::object r = obj_->attr("write")(file(f), data);
			if (r.is_none())
				return static_cast<ssize_t>(in.size());
			ssize_t n = r.cast<ssize_t>();
			if (n < 0)
				throw std::invalid_argument(
					fmt::format("{} is not a count (raise OSError for an error)", n));
			return std::min(n, static_cast<ssize_t>(in.size()));
		} catch (py::error_already_set &e) {
			return errnoOf(ctx_.name(), cls_ + ".write()", e);
		} catch (std::exception &e) {
			DEVEMU_LOG(Error, ctx_.name(), "python: {}.write() must return a count: {}", cls_, e.what());
			return -EIO;
		}
	}

	IoctlResult ioctl(OpenFile &f, IoctlCall &call) override
	{
		InPython inPython;
		if (!py::hasattr(*obj_, "ioctl"))
			return IoctlResult::error(-ENOTTY);
		py::object pycall = py::cast(PyIoctl{ &call });
		struct Expire {
			py::object &o;
			~Expire() { o.cast<PyIoctl &>().call = nullptr; }
		} expire{ pycall };
		try {
			py::object r = obj_->attr("ioctl")(file(f), call.cmd(), pycall);
			return call.done(r.is_none() ? 0 : r.cast<int>());
		} catch (py::error_already_set &e) {
			if (e.matches(needMemory()))
				return call.done();
			if (e.matches(PyExc_BlockingIOError))
				return IoctlResult::wouldBlock();
			return IoctlResult::error(errnoOf(ctx_.name(), cls_ + ".ioctl()", e));
		} catch (std::exception &e) {
			DEVEMU_LOG(Error, ctx_.name(), "python: {}.ioctl() must return an int: {}", cls_, e.what());
			return IoctlResult::error(-EIO);
		}
	}

	uint32_t poll(const OpenFile &f) override { return askMask(f, "poll", POLLIN | POLLOUT); }
	uint32_t readable(const OpenFile &f) override { return askMask(f, "readable", 0); }
	uint32_t writable(const OpenFile &f) override { return askMask(f, "writable", 0); }

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		InPython inPython;
		std::vector<std::string> verbs;
		for (auto name : py::module_::import("builtins").attr("dir")(*obj_)) {
			std::string n = name.cast<std::string>();
			if (n.rfind("inject_", 0) == 0 && n.size() > 7)
				verbs.push_back(n.substr(7));
		}
		std::string list = "verbs:";
		for (const auto &v : verbs)
			list += " " + v;
		if (args.empty() || std::find(verbs.begin(), verbs.end(), args[0]) == verbs.end()) {
			reply = args.empty() ? list : fmt::format("unknown verb '{}' ({})", args[0], list);
			return -EINVAL;
		}
		try {
			py::tuple rest(args.size() - 1);
			for (size_t i = 1; i < args.size(); i++)
				rest[i - 1] = py::str(args[i]);
			py::object r = obj_->attr(("inject_" + args[0]).c_str())(*rest);
			reply = r.is_none() ? "ok" : py::str(r).cast<std::string>();
			return 0;
		} catch (py::error_already_set &e) {
			if (e.matches(PyExc_ValueError) || e.matches(PyExc_TypeError)) {
				reply = py::str(e.value()).cast<std::string>();
				return -EINVAL;
			}
			int ret = errnoOf(ctx_.name(), cls_ + ".inject_" + args[0] + "()", e);
			reply = ret == -EIO ? "the verb raised (its traceback is in the daemon's log)" : "failed";
			return ret;
		}
	}

	void notify(uint32_t pulse) { ctx_.notify(pulse); }
	void setStatusWord(unsigned index, uint32_t value)
	{
		if (index >= 12)
			throw py::index_error("status words are 0 to 11");
		ctx_.setStatusWord(index, value);
	}
	std::shared_ptr<StrandTimer> after(double seconds, py::function fn)
	{
		return timers_.after(seconds, std::move(fn));
	}

	static py::object &needMemory()
	{
		static py::object *type = nullptr;
		if (!type)
			type = new py::object(py::module_::import("_devemu").attr("NeedMemory"));
		return *type;
	}

private:
	/* The File object of f, its flags refreshed (fcntl may have changed them). */
	py::object &file(const OpenFile &f)
	{
		auto &state = f.stateAs<PyFileState>();
		sync(f, *state.file);
		return *state.file;
	}

	static void sync(const OpenFile &f, py::object &o)
	{
		auto &pf = o.cast<PyFile &>();
		pf.fh = f.fh;
		pf.flags = f.flags;
		pf.pid = f.pid;
		pf.uid = f.uid;
		pf.gid = f.gid;
		pf.compat = f.compat;
		pf.callerPid = f.callerPid;
		pf.callerCaps = f.callerCaps;
	}

	uint32_t askMask(const OpenFile &f, const char *method, uint32_t fallback)
	{
		InPython inPython;
		if (!f.state || !py::hasattr(*obj_, method))
			return fallback;
		try {
			return obj_->attr(method)(file(f)).cast<uint32_t>();
		} catch (py::error_already_set &e) {
			errnoOf(ctx_.name(), cls_ + "." + method + "()", e);
			return POLLERR;
		} catch (std::exception &e) {
			DEVEMU_LOG(Error, ctx_.name(), "python: {}.{}() must return an int: {}", cls_, method,
				   e.what());
			return POLLERR;
		}
	}

	DeviceContext &ctx_;
	std::string cls_;
	Timers timers_;
	PyRef handle_;
	PyRef obj_;
};

PythonModel &alive(DeviceHandle &h)
{
	if (!h.model)
		throw std::runtime_error(fmt::format("device '{}' is no longer served", h.name));
	return *h.model;
}

class PythonFarEnd;

/* What a Python far end gets as `line`. */
struct LineHandle {
	std::weak_ptr<PythonFarEnd> far;
	std::string name;
};

/*
 * A Python object at the far end of the UART: it receives what our
 * transmitter sends, at the line's pace, and answers through `line`. Its
 * calls into the port are posted to the strand, so Python never re-enters the
 * port while the port is calling Python.
 */
class PythonFarEnd final : public serial::FarEnd
{
public:
	PythonFarEnd(const Strand &strand, std::string device, std::string script, std::string cls)
		: strand_(strand), device_(std::move(device)), script_(std::move(script)), cls_(std::move(cls)),
		  timers_(strand, device_)
	{}

	~PythonFarEnd() override
	{
		py::gil_scoped_acquire gil;
		obj_.reset();
		handle_.reset();
	}

	bool instantiate(py::object cls, std::string &error)
	{
		handle_ = keep(
			py::cast(LineHandle{ std::static_pointer_cast<PythonFarEnd>(shared_from_this()), device_ }));
		obj_ = construct(cls, cls_ + "(line)", handle_, error);
		return obj_ != nullptr;
	}

	void start() override {}
	void stop() override
	{
		stopped_ = true;
		InPython inPython;
		call("close");
	}
	std::string describe() const override { return fmt::format("python:{}:{}", script_, cls_); }
	bool peerConnected() const override { return true; }

	void send(const std::vector<uint8_t> &bytes) override
	{
		InPython inPython;
		call("received", py::bytes(reinterpret_cast<const char *>(bytes.data()), bytes.size()));
	}

	void setReading(bool want) override
	{
		reading_ = want;
		while (reading_ && !pending_.empty() && onData) {
			auto chunk = std::move(pending_.front());
			pending_.pop_front();
			onData(chunk.data(), chunk.size());
		}
	}

	void lineSettings(unsigned baud, unsigned dataBits, char parity, unsigned stopBits) override
	{
		auto now = std::make_tuple(baud, dataBits, parity, stopBits);
		if (settings_ == now)
			return;
		settings_ = now;
		InPython inPython;
		call("line_settings", baud, dataBits, std::string(1, parity), stopBits);
	}

	void modemOutputs(bool dtr, bool rts) override
	{
		auto now = std::make_pair(dtr, rts);
		if (outputs_ == now)
			return;
		outputs_ = now;
		InPython inPython;
		call("modem_control", dtr, rts);
	}

	void breakState(bool on) override
	{
		InPython inPython;
		call("break_condition", on);
	}

	/* From Python (GIL held): bytes towards our receiver. */
	void fromPython(std::string bytes)
	{
		post([bytes = std::move(bytes)](PythonFarEnd &self) {
			if (!self.onData)
				return;
			if (!self.reading_) {
				self.pending_.emplace_back(bytes.begin(), bytes.end());
				return;
			}
			self.onData(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
		});
	}
	void setLines(uint8_t mask, uint8_t value)
	{
		post([mask, value](PythonFarEnd &self) {
			if (self.onModemLines)
				self.onModemLines(mask, value);
		});
	}
	void sendBreak()
	{
		post([](PythonFarEnd &self) {
			if (self.onBreak)
				self.onBreak();
		});
	}
	std::shared_ptr<StrandTimer> after(double seconds, py::function fn)
	{
		return timers_.after(seconds, std::move(fn));
	}

private:
	template<typename F>
	void post(F fn)
	{
		std::weak_ptr<PythonFarEnd> weak = std::static_pointer_cast<PythonFarEnd>(shared_from_this());
		asio::post(strand_, [weak, fn = std::move(fn)] {
			if (auto self = weak.lock(); self && !self->stopped_)
				fn(*self);
		});
	}

	/* With the GIL held: obj.method(args...) when it has one; a raise is logged, the line goes on. */
	template<typename... Args>
	void call(const char *method, Args &&...args)
	{
		if (!obj_ || !py::hasattr(*obj_, method))
			return;
		try {
			obj_->attr(method)(std::forward<Args>(args)...);
		} catch (py::error_already_set &e) {
			DEVEMU_LOG(Error, device_, "python: far end {}.{}() raised:", cls_, method);
			for (const auto &line : tracebackLines(e))
				DEVEMU_LOG(Error, device_, "python: {}", line);
		}
	}

	Strand strand_;
	std::string device_;
	std::string script_;
	std::string cls_;
	Timers timers_;
	PyRef handle_;
	PyRef obj_;
	bool stopped_ = false;
	bool reading_ = true;
	std::deque<std::vector<uint8_t>> pending_;
	std::optional<std::tuple<unsigned, unsigned, char, unsigned>> settings_;
	std::optional<std::pair<bool, bool>> outputs_;
};

PythonFarEnd &alive(LineHandle &h)
{
	auto far = h.far.lock();
	if (!far)
		throw std::runtime_error(fmt::format("the line of '{}' is gone", h.name));
	return *far; /* kept alive by the port, which is calling us or owns the strand we run on */
}

/*
 * make(cls) with the interpreter up, the GIL held and cls found in script;
 * make instantiates it. Null with error when any of that fails.
 */
template<typename Make>
auto withClass(const std::string &script, const std::string &cls, std::string &error, Make make)
	-> decltype(make(py::object()))
{
	ensureInterpreter();
	py::gil_scoped_acquire gil;
	py::object type = findClass(script, cls, error);
	if (!type)
		return nullptr;
	return make(type);
}

class BackendImpl final : public Backend
{
public:
	std::unique_ptr<Model> makeModel(DeviceContext &ctx, const std::string &script, const std::string &cls,
					 std::string &error) override
	{
		return withClass(script, cls, error, [&](const py::object &type) -> std::unique_ptr<Model> {
			auto model = std::make_unique<PythonModel>(ctx, cls);
			return model->instantiate(type, error) ? std::move(model) : nullptr;
		});
	}

	std::shared_ptr<serial::FarEnd> makeFarEnd(const Strand &strand, const std::string &script,
						   const std::string &cls, const std::string &device,
						   std::string &error) override
	{
		return withClass(script, cls, error, [&](const py::object &type) -> std::shared_ptr<serial::FarEnd> {
			auto far = std::make_shared<PythonFarEnd>(strand, device, script, cls);
			return far->instantiate(type, error) ? far : nullptr;
		});
	}

	std::unique_ptr<I2cSlave> makeI2cChip(const Strand &strand, const std::string &script, const std::string &cls,
					      const std::string &device, uint16_t addr, std::string &error) override
	{
		return withClass(script, cls, error, [&](const py::object &type) {
			return python::makeI2cChip(type, strand, script, cls, device, addr, error);
		});
	}
};

} // namespace

} // namespace devemu::python

using namespace devemu::python;

PYBIND11_EMBEDDED_MODULE(_devemu, m)
{
	m.doc() = "devemu's side of Python devices: the handles the daemon passes to device classes";
	py::exception<CallTimeoutTag>(m, "CallTimeout", PyExc_BaseException);
	py::register_exception<NeedMemory>(m, "NeedMemory", PyExc_BaseException);

	py::class_<devemu::StrandTimer, std::shared_ptr<devemu::StrandTimer>>(m, "Timer")
		.def("cancel", &devemu::StrandTimer::cancel)
		.def_property_readonly("pending", &devemu::StrandTimer::pending);

	py::class_<DeviceHandle>(m, "Device")
		.def_readonly("name", &DeviceHandle::name)
		.def(
			"notify", [](DeviceHandle &h, uint32_t pulse) { alive(h).notify(pulse); }, py::arg("pulse") = 0,
			"state changed: parked requests are retried, poll readiness republished")
		.def(
			"call_later",
			[](DeviceHandle &h, double seconds, py::function fn) { return alive(h).after(seconds, fn); },
			"runs fn() on the device's strand after seconds; returns a Timer")
		.def(
			"set_status",
			[](DeviceHandle &h, unsigned index, uint32_t value) { alive(h).setStatusWord(index, value); },
			"publishes a status word (0..11) in the shadow registers")
		.def("log",
		     [](DeviceHandle &h, const std::string &text) { DEVEMU_LOG(Info, h.name, "python: {}", text); });

	py::class_<PyFile>(m, "File", py::dynamic_attr())
		.def_readonly("fh", &PyFile::fh)
		.def_readonly("flags", &PyFile::flags)
		.def_readonly("pid", &PyFile::pid)
		.def_readonly("uid", &PyFile::uid)
		.def_readonly("gid", &PyFile::gid)
		.def_readonly("compat", &PyFile::compat)
		.def_readonly("caller_pid", &PyFile::callerPid)
		.def(
			"caller_capable",
			[](const PyFile &f, int cap) { return devemu::callerCapable(f.callerPid, f.callerCaps, cap); },
			"whether the caller of the current request holds capability cap (capable() as the kernel asks it)")
		.def_property_readonly("nonblock", [](const PyFile &f) { return (f.flags & O_NONBLOCK) != 0; });

	py::class_<PyIoctl>(m, "IoctlCall")
		.def_property_readonly("cmd", [](const PyIoctl &c) { return c.get().cmd(); })
		.def_property_readonly("arg", [](const PyIoctl &c) { return c.get().arg(); })
		.def_property_readonly("compat", [](const PyIoctl &c) { return c.get().compat(); })
		.def(
			"read_user",
			[](const PyIoctl &c, uint64_t addr, size_t len) {
				auto bytes = c.get().readUser(addr, len);
				if (!bytes)
					throw NeedMemory{};
				return py::bytes(reinterpret_cast<const char *>(bytes->data()), bytes->size());
			},
			"the caller's bytes at addr (raises NeedMemory, caught by devemu, when this round lacks them)")
		.def(
			"write_user",
			[](const PyIoctl &c, uint64_t addr, const py::bytes &data) {
				std::string_view v = data;
				return c.get().writeUser(addr, std::as_bytes(std::span(v.data(), v.size())));
			},
			"queues data for the caller's memory at addr (another round carries it when needed)");

	py::class_<LineHandle>(m, "Line")
		.def_readonly("name", &LineHandle::name)
		.def(
			"send", [](LineHandle &h, const py::bytes &data) { alive(h).fromPython(std::string(data)); },
			"bytes from the far end towards the UART's receiver (they take their time on the wire)")
		.def(
			"set_modem",
			[](LineHandle &h, py::object cts, py::object dsr, py::object dcd, py::object ri) {
				uint8_t mask = 0, value = 0;
				auto put = [&](py::object &v, uint8_t bit) {
					if (v.is_none())
						return;
					mask |= bit;
					if (v.cast<bool>())
						value |= bit;
				};
				put(cts, UART_MSR_CTS);
				put(dsr, UART_MSR_DSR);
				put(dcd, UART_MSR_DCD);
				put(ri, UART_MSR_RI);
				alive(h).setLines(mask, value);
			},
			py::arg("cts") = py::none(), py::arg("dsr") = py::none(), py::arg("dcd") = py::none(),
			py::arg("ri") = py::none(),
			"raises or drops the far end's modem outputs (our CTS, DSR, DCD, RI)")
		.def(
			"send_break", [](LineHandle &h) { alive(h).sendBreak(); },
			"a break towards the UART's receiver")
		.def(
			"call_later",
			[](LineHandle &h, double seconds, py::function fn) { return alive(h).after(seconds, fn); },
			"runs fn() on the device's strand after seconds; returns a Timer")
		.def("log",
		     [](LineHandle &h, const std::string &text) { DEVEMU_LOG(Info, h.name, "python: {}", text); });

	bindI2cChip(m);
}

extern "C" __attribute__((visibility("default"))) Backend *devemu_python_backend(unsigned abi)
{
	static BackendImpl backend;
	return abi == DEVEMU_PYTHON_ABI ? &backend : nullptr;
}
