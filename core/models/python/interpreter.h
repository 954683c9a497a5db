// SPDX-License-Identifier: MIT
// python: the embedded interpreter and its rules: references, the GIL and each call's time budget, tracebacks, errnos, scripts.
#pragma once

#include "devemu/asio.h"
#include "devemu/strand_timer.h"

#include <pybind11/embed.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace devemu::python {

/*
 * A Python reference that C++ may drop without the GIL (a timer's handler, a
 * FileState destroyed by the core): the deleter takes the GIL.
 */
using PyRef = std::shared_ptr<py::object>;

PyRef keep(py::object o);

/* Raised inside device code that ran past its budget (a BaseException: `except Exception` lets it pass). */
struct CallTimeoutTag {};

/* Raised by IoctlCall.read_user() when this round does not carry the range: the core runs another. */
struct NeedMemory : std::exception {
	const char *what() const noexcept override
	{
		return "this ioctl round does not carry that memory yet (let it propagate: devemu runs another round)";
	}
};

/*
 * One interpreter for the life of the process, made by the first Python
 * device; afterwards the GIL is held only while Python runs. Never finalised:
 * the daemon's last devices may be torn down after main() returns.
 */
void ensureInterpreter();

/*
 * How long one call into a device's Python code may run: a method that loops
 * past it gets a CallTimeout raised inside it (between two bytecodes), so the
 * request fails with EIO and the device's strand, and the daemon, go on. A call
 * blocked in C (time.sleep, a socket) is only interrupted when it returns.
 */
constexpr std::chrono::seconds kCallBudget{ 2 };

/* Watches the call into Python in progress from a thread of its own (made with the interpreter). */
class CallWatch
{
public:
	static CallWatch &get()
	{
		static auto *watch = new CallWatch; /* never destroyed: its thread runs until the process ends */
		return *watch;
	}

	/* With the GIL held: the current thread entered device code. 0 for a nested call (the outer one counts). */
	uint64_t arm()
	{
		std::lock_guard lock(mutex_);
		if (armed_)
			return 0;
		armed_ =
			Armed{ ++serial_, PyThread_get_thread_ident(), std::chrono::steady_clock::now() + kCallBudget };
		wake_.notify_one();
		return armed_->id;
	}

	/* With the GIL held: the call returned; a timeout raised too late to land is withdrawn. */
	void disarm(uint64_t id)
	{
		if (!id)
			return;
		std::unique_lock lock(mutex_);
		if (!armed_ || armed_->id != id)
			return;
		bool raised = armed_->raised;
		unsigned long thread = armed_->thread;
		armed_.reset();
		lock.unlock();
		if (raised)
			PyThreadState_SetAsyncExc(thread, nullptr);
	}

	static py::object &timeoutType()
	{
		static auto *type = new py::object(py::module_::import("_devemu").attr("CallTimeout"));
		return *type;
	}

private:
	struct Armed {
		uint64_t id;
		unsigned long thread;
		std::chrono::steady_clock::time_point deadline;
		bool raised = false;
	};

	CallWatch()
	{
		timeoutType();
		std::thread([this] { run(); }).detach();
	}

	void run()
	{
		std::unique_lock lock(mutex_);
		for (;;) {
			if (!armed_ || armed_->raised) {
				wake_.wait(lock);
				continue;
			}
			if (wake_.wait_until(lock, armed_->deadline) != std::cv_status::timeout)
				continue;
			if (!armed_ || std::chrono::steady_clock::now() < armed_->deadline)
				continue;
			uint64_t id = armed_->id;
			lock.unlock();
			PyGILState_STATE state = PyGILState_Ensure();
			lock.lock();
			/* The GIL orders this against disarm(): the call is still running, or it is gone. */
			if (armed_ && armed_->id == id) {
				PyThreadState_SetAsyncExc(armed_->thread, timeoutType().ptr());
				armed_->raised = true;
			}
			lock.unlock();
			PyGILState_Release(state);
			lock.lock();
		}
	}

	std::mutex mutex_;
	std::condition_variable wake_;
	std::optional<Armed> armed_;
	uint64_t serial_ = 0;
};

/* Inside a call into a device's Python code: the GIL, and the call's time budget. */
class InPython
{
public:
	InPython() : id_(CallWatch::get().arm()) {}
	~InPython() { CallWatch::get().disarm(id_); }
	InPython(const InPython &) = delete;
	InPython &operator=(const InPython &) = delete;

private:
	py::gil_scoped_acquire gil_; /* first: the budget is armed and disarmed with the GIL held */
	uint64_t id_;
};

/* The formatted traceback of the exception being handled, one string per line. */
std::vector<std::string> tracebackLines(py::error_already_set &e);

/* The same as one text, a line each. */
std::string tracebackText(py::error_already_set &e);

/* cls(handle), with the GIL held; null with what raised and its traceback in error. */
PyRef construct(const py::object &cls, const std::string &what, const PyRef &handle, std::string &error);

/* Logs what raised (or ran past its budget) and the traceback, one line each, as errors of device. */
void logTraceback(const std::string &device, const std::string &what, py::error_already_set &e);

/*
 * The -errno a Python exception stands for: BlockingIOError is EAGAIN (park),
 * an OSError with an errno is that errno; anything else is a bug in the
 * device's code: its traceback is logged and the request fails with EIO.
 */
int errnoOf(const std::string &device, const std::string &what, py::error_already_set &e);

/* Imports script (once per version of the file), finds cls in it; error carries the traceback. */
py::object findClass(const std::string &script, const std::string &cls, std::string &error);

/* Timers a Python device or far end armed: run on the strand, with the GIL, until the owner goes. */
class Timers
{
public:
	explicit Timers(const Strand &strand, std::string device) : strand_(strand), device_(std::move(device)) {}
	~Timers()
	{
		for (auto &t : timers_)
			t->cancel();
	}

	/* Runs fn() on the strand after seconds, with the GIL and the call budget; a raise is logged. */
	std::shared_ptr<StrandTimer> after(double seconds, py::function fn);

private:
	Strand strand_;
	std::string device_;
	std::vector<std::shared_ptr<StrandTimer>> timers_;
};

} // namespace devemu::python
