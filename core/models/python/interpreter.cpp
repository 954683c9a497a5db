// SPDX-License-Identifier: MIT
// python: the embedded interpreter: made once on first use, tracebacks, what exceptions mean, importing scripts.
#include "interpreter.h"

#include "devemu/log.h"

#include <pybind11/functional.h>

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>

namespace devemu::python {

PyRef keep(py::object o)
{
	return PyRef(new py::object(std::move(o)), [](py::object *p) {
		py::gil_scoped_acquire gil;
		delete p;
	});
}

void ensureInterpreter()
{
	static std::once_flag once;
	std::call_once(once, [] {
		/* No signal handlers: SIGINT/SIGTERM belong to the daemon's signal_set. */
		py::initialize_interpreter(false);
		py::module_::import("_devemu"); /* registers the handle types C++ hands to Python */
		PyEval_SaveThread();
	});
}

std::vector<std::string> tracebackLines(py::error_already_set &e)
{
	std::vector<std::string> lines;
	try {
		auto format = py::module_::import("traceback").attr("format_exception");
		for (auto chunk : format(e.type(), e.value(), e.trace())) {
			std::string text = chunk.cast<std::string>();
			size_t start = 0;
			while (start < text.size()) {
				size_t end = text.find('\n', start);
				if (end == std::string::npos)
					end = text.size();
				lines.push_back(text.substr(start, end - start));
				start = end + 1;
			}
		}
	} catch (...) {
		lines = { e.what() };
	}
	return lines;
}

std::string tracebackText(py::error_already_set &e)
{
	std::string text;
	for (const auto &line : tracebackLines(e))
		text += line + "\n";
	return text;
}

PyRef construct(const py::object &cls, const std::string &what, const PyRef &handle, std::string &error)
{
	try {
		return keep(cls(*handle));
	} catch (py::error_already_set &e) {
		error = fmt::format("{} raised:\n{}", what, tracebackText(e));
		return nullptr;
	}
}

void logTraceback(const std::string &device, const std::string &what, py::error_already_set &e)
{
	if (e.matches(CallWatch::timeoutType()))
		DEVEMU_LOG(Error, device,
			   "python: {} ran longer than {} s and was interrupted; the request fails with EIO:", what,
			   kCallBudget.count());
	else
		DEVEMU_LOG(Error, device, "python: {} raised; the request fails with EIO:", what);
	for (const auto &line : tracebackLines(e))
		DEVEMU_LOG(Error, device, "python: {}", line);
}

int errnoOf(const std::string &device, const std::string &what, py::error_already_set &e)
{
	if (e.matches(PyExc_BlockingIOError))
		return -EAGAIN;
	if (e.matches(PyExc_OSError)) {
		py::object no = e.value().attr("errno");
		if (!no.is_none())
			return -std::abs(no.cast<int>());
	}
	logTraceback(device, what, e);
	return -EIO;
}

/*
 * The script's module: imported once per file and version (devices of one
 * file share it; a file changed since, as before a SIGHUP reload, is imported
 * afresh), under a name of its own, its directory on sys.path.
 */
py::object importScript(const std::string &path)
{
	struct Imported {
		double mtime;
		py::object module;
	};
	static auto *modules = new std::map<std::string, Imported>; /* never freed: the interpreter stays */
	static unsigned serial = 0;
	auto os = py::module_::import("os");
	auto sys = py::module_::import("sys");
	auto osPath = os.attr("path");
	std::string abs = osPath.attr("abspath")(path).cast<std::string>();
	double mtime = osPath.attr("getmtime")(abs).cast<double>();
	auto it = modules->find(abs);
	if (it != modules->end() && it->second.mtime == mtime)
		return it->second.module;
	std::string dir = osPath.attr("dirname")(abs).cast<std::string>();
	py::list sysPath = sys.attr("path");
	if (!sysPath.contains(dir))
		sysPath.append(dir);
	auto util = py::module_::import("importlib.util");
	std::string stem =
		osPath.attr("splitext")(osPath.attr("basename")(abs)).attr("__getitem__")(0).cast<std::string>();
	std::string name = fmt::format("devemu_script_{}_{}", serial++, stem);
	py::object spec = util.attr("spec_from_file_location")(name, abs);
	py::object module = util.attr("module_from_spec")(spec);
	sys.attr("modules")[py::str(name)] = module;
	try {
		spec.attr("loader").attr("exec_module")(module);
	} catch (...) {
		sys.attr("modules").attr("pop")(name, py::none());
		throw;
	}
	(*modules)[abs] = Imported{ mtime, module };
	return module;
}

py::object findClass(const std::string &script, const std::string &cls, std::string &error)
{
	try {
		py::object module = importScript(script);
		if (!py::hasattr(module, cls.c_str())) {
			error = fmt::format("{} defines no '{}'", script, cls);
			return py::object();
		}
		return module.attr(cls.c_str());
	} catch (py::error_already_set &e) {
		error = fmt::format("{}: importing it failed:\n{}", script, tracebackText(e));
		return py::object();
	}
}

std::shared_ptr<StrandTimer> Timers::after(double seconds, py::function fn)
{
	std::erase_if(timers_, [](const auto &t) { return !t->pending(); });
	auto timer = std::make_shared<StrandTimer>(strand_);
	PyRef handler = keep(std::move(fn));
	std::string device = device_;
	auto delay = std::chrono::duration_cast<StrandTimer::Clock::duration>(
		std::chrono::duration<double>(std::max(seconds, 0.0)));
	timer->after(delay, [handler, device] {
		InPython inPython;
		try {
			(*handler)();
		} catch (py::error_already_set &e) {
			DEVEMU_LOG(Error, device, "python: a timer's function raised:");
			for (const auto &line : tracebackLines(e))
				DEVEMU_LOG(Error, device, "python: {}", line);
		}
	});
	timers_.push_back(timer);
	return timer;
}

} // namespace devemu::python
