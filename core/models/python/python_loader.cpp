// SPDX-License-Identifier: MIT
// python: loading libdevemu-python.so on first use, the option checks, and the `python` model that forwards to it.
#include "python_loader.h"

#include "devemu/inject_verbs.h"
#include "devemu/model_registry.h"

#include <fmt/core.h>

#include <dlfcn.h>
#include <poll.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace devemu::python {

namespace {

std::string besideCoreLibrary()
{
	Dl_info info{};
	if (!dladdr(reinterpret_cast<void *>(&loadBackend), &info) || !info.dli_fname)
		return "libdevemu-python.so";
	std::string self = info.dli_fname;
	auto slash = self.rfind('/');
	return (slash == std::string::npos ? std::string() : self.substr(0, slash + 1)) + "libdevemu-python.so";
}

} // namespace

Backend *loadBackend(std::string &error)
{
	static std::mutex lock;
	static Backend *backend = nullptr;
	static std::string failure;
	std::lock_guard guard(lock);
	if (backend)
		return backend;
	if (!failure.empty()) {
		error = failure;
		return nullptr;
	}
	const char *env = std::getenv("DEVEMU_PYTHON_LIB");
	std::string path = env && *env ? env : besideCoreLibrary();
	/*
	 * RTLD_GLOBAL: libpython's symbols must be visible to the extension
	 * modules Python itself dlopens later (Debian's are not linked to it).
	 * Kept loaded for the life of the process, as the interpreter is.
	 */
	void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
	if (!handle) {
		failure = fmt::format("cannot load the Python support {}: {}", path, dlerror());
	} else {
		using EntryFn = Backend *(*)(unsigned);
		auto entry = reinterpret_cast<EntryFn>(dlsym(handle, "devemu_python_backend"));
		backend = entry ? entry(DEVEMU_PYTHON_ABI) : nullptr;
		if (!backend)
			failure = fmt::format("{}: not the Python support of this libdevemu", path);
	}
	error = failure;
	return backend;
}

bool parseScriptAndClass(const std::string &text, const char *defaultClass, std::string &script, std::string &cls,
			 std::string &error)
{
	script = text;
	cls = defaultClass;
	auto colon = script.rfind(':');
	std::string ignored;
	if (colon != std::string::npos && checkClassName(script.substr(colon + 1), ignored)) {
		cls = script.substr(colon + 1);
		script.resize(colon);
	}
	return checkScript(script, error);
}

bool checkScript(const std::string &path, std::string &error)
{
	if (path.empty()) {
		error = "expected the path of a Python file";
		return false;
	}
	if (::access(path.c_str(), R_OK) != 0) {
		error = fmt::format("'{}': {}", path, std::strerror(errno));
		return false;
	}
	return true;
}

bool checkClassName(const std::string &name, std::string &error)
{
	bool ok = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0]));
	for (char c : name)
		ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
	if (!ok)
		error = fmt::format("'{}' is not a Python class name", name);
	return ok;
}

namespace {

/*
 * The `python` model as the registry sees it: options are checked without
 * Python; start() loads the interpreter and the script and builds the model
 * every operation is forwarded to.
 */
class PythonModelProxy final : public Model
{
public:
	PythonModelProxy(DeviceContext &ctx, std::string script, std::string cls)
		: ctx_(ctx), script_(std::move(script)), cls_(std::move(cls))
	{}

	int start(std::string &error) override
	{
		Backend *backend = loadBackend(error);
		if (!backend)
			return -ENOEXEC;
		model_ = backend->makeModel(ctx_, script_, cls_, error);
		if (!model_)
			return -EINVAL;
		return model_->start(error);
	}

	int open(OpenFile &f) override { return model_->open(f); }
	void release(OpenFile &f) override { model_->release(f); }
	ssize_t read(OpenFile &f, std::span<std::byte> out) override { return model_->read(f, out); }
	ssize_t write(OpenFile &f, std::span<const std::byte> in) override { return model_->write(f, in); }
	IoctlResult ioctl(OpenFile &f, IoctlCall &call) override { return model_->ioctl(f, call); }
	uint32_t poll(const OpenFile &f) override { return model_ ? model_->poll(f) : POLLERR; }
	uint32_t readable(const OpenFile &f) override { return model_ ? model_->readable(f) : 0; }
	uint32_t writable(const OpenFile &f) override { return model_ ? model_->writable(f) : 0; }
	uint64_t dropped() const override { return model_ ? model_->dropped() : 0; }
	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		return model_->inject(args, reply);
	}

private:
	DeviceContext &ctx_;
	std::string script_;
	std::string cls_;
	std::unique_ptr<Model> model_;
};

} // namespace

} // namespace devemu::python

namespace devemu {

void registerPythonModel(ModelRegistry &registry)
{
	registry.add({ "python", "device behaviour written in Python: a class in a script serves the node",
		       "script=FILE           the Python file that defines the class (required)\n"
		       "class=NAME            the class serving the device (default Device)\n",
		       [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			       std::string script = opts.string("script", "");
			       std::string cls = opts.string("class", "Device");
			       std::string error;
			       if (!python::checkScript(script, error))
				       opts.fail("script", error);
			       else if (!python::checkClassName(cls, error))
				       opts.fail("class", error);
			       if (!opts.error().empty())
				       return nullptr;
			       return std::make_unique<python::PythonModelProxy>(ctx, std::move(script),
										 std::move(cls));
		       },
		       injectHelpLine("VERB", "[ARGS...]",
				      "the class's inject_VERB(*args) method; its return value is the reply") });
}

} // namespace devemu
