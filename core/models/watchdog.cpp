// SPDX-License-Identifier: MIT
// watchdog: a countdown timer behind the <linux/watchdog.h> ABI of watchdog_dev; expiry is logged, never a reboot.
#include "watchdog.h"

#include "devemu/clock.h"
#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/strand_timer.h"

#include <fmt/core.h>

#include <fcntl.h>
#include <linux/watchdog.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>

extern char **environ;

namespace devemu {

/* ---------------------------------------------------------------- the timer block */

uint32_t WatchdogTimer::read(uint32_t offset, int64_t nowNs)
{
	switch (offset) {
	case kLoad:
		return load_;
	case kValue:
		advance(nowNs);
		if (!(control_ & kEn))
			return load_;
		return static_cast<uint32_t>(std::max<int64_t>(deadlineNs() - nowNs, 0) / kNsPerMs);
	case kControl:
		return control_;
	case kPreload:
		return preload_;
	case kStatus:
		advance(nowNs);
		return status_;
	case kResets:
		return resets_;
	case kId:
		return kIdValue;
	default:
		return 0;
	}
}

void WatchdogTimer::write(uint32_t offset, uint32_t value, int64_t nowNs)
{
	advance(nowNs);
	switch (offset) {
	case kLoad:
		/* Like the SP805: a new load value restarts the count at once. */
		load_ = std::max<uint32_t>(value, 1);
		startNs_ = nowNs;
		preFired_ = false;
		return;
	case kControl:
		if ((value & kEn) && !(control_ & kEn)) {
			startNs_ = nowNs;
			preFired_ = false;
		}
		control_ = value & (kEn | kPreIntEn | kResEn);
		return;
	case kPreload:
		preload_ = value;
		preFired_ = false;
		return;
	case kKick:
		if (value != kKickMagic) {
			DEVEMU_LOG(Debug, "watchdog", "timer: ignoring KICK value {:#x}", value);
			return;
		}
		startNs_ = nowNs;
		preFired_ = false;
		status_ &= ~kStatusPre;
		return;
	case kStatus:
		status_ &= ~value;
		return;
	default:
		DEVEMU_LOG(Debug, "watchdog", "timer: write of {:#x} to read-only or unknown register {:#x}", value,
			   offset);
	}
}

void WatchdogTimer::advance(int64_t nowNs)
{
	if (!(control_ & kEn))
		return;
	if ((control_ & kPreIntEn) && preload_ && !preFired_ && nowNs >= deadlineNs() - int64_t(preload_) * kNsPerMs) {
		preFired_ = true;
		status_ |= kStatusPre;
		events_.pretimeout = true;
	}
	if (nowNs >= deadlineNs()) {
		/* The count stops at zero; with RESEN that is the reset, which also clears the block's control. */
		bool reset = control_ & kResEn;
		control_ = 0;
		if (reset) {
			status_ |= kStatusTimeout;
			resets_++;
			events_.reset = true;
		}
	}
}

std::optional<int64_t> WatchdogTimer::nextEvent(int64_t) const
{
	if (!(control_ & kEn))
		return std::nullopt;
	int64_t t = deadlineNs();
	if ((control_ & kPreIntEn) && preload_ && !preFired_)
		t = std::min(t, deadlineNs() - int64_t(preload_) * kNsPerMs);
	return t;
}

/* ---------------------------------------------------------------- the model */

namespace {

constexpr uint32_t kOptions =
	WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE | WDIOF_KEEPALIVEPING | WDIOF_PRETIMEOUT | WDIOF_CARDRESET;
/* Boot status bits GETSTATUS repeats (watchdog_get_status() without a driver status op). */
constexpr uint32_t kStatusFromBoot = WDIOF_CARDRESET | WDIOF_OVERHEAT | WDIOF_FANFAULT | WDIOF_EXTERN1 | WDIOF_EXTERN2 |
				     WDIOF_POWERUNDER | WDIOF_POWEROVER;

enum StatusWord : unsigned {
	kWordState = 0, /* 0 stopped, 1 running */
	kWordTimeout = 1,
	kWordPretimeout = 2,
	kWordExpiries = 3,
	kWordBootStatus = 4,
	kWordOpen = 5,
};

class WatchdogModel final : public Model
{
public:
	WatchdogModel(DeviceContext &ctx, WatchdogConfig config)
		: ctx_(ctx), config_(std::move(config)), timer_(ctx.strand()), reaper_(ctx.strand())
	{
		if (!config_.clock)
			config_.clock = monotonicNs;
		timeout_ = config_.timeout;
		pretimeout_ = config_.pretimeout;
		int64_t t = now();
		chip_.write(WatchdogTimer::kLoad, timeout_ * 1000, t);
		chip_.write(WatchdogTimer::kPreload, pretimeout_ * 1000, t);
	}

	/* Nothing to acquire until the count runs; the status words show the configuration. */
	int start(std::string &) override
	{
		publish();
		return 0;
	}

	int open(OpenFile &) override
	{
		check();
		/* watchdog_open(): one opener at a time; opening starts the countdown. */
		if (open_)
			return -EBUSY;
		open_ = true;
		startWatchdog();
		publish();
		return 0;
	}

	void release(OpenFile &) override
	{
		check();
		/* watchdog_release(): stop only after the magic close character (and never with nowayout). */
		int err = 0;
		if (active_)
			err = std::exchange(allowRelease_, false) ? stopWatchdog() : -EBUSY;
		if (err < 0) {
			DEVEMU_LOG(Warning, ctx_.name(), "watchdog did not stop! ({} s left to expiry)", timeLeft());
			ping();
		}
		open_ = false;
		publish();
	}

	ssize_t write(OpenFile &, std::span<const std::byte> data) override
	{
		check();
		if (data.empty())
			return 0;
		/* watchdog_write(): a 'V' anywhere arms the magic close; any write pings. */
		allowRelease_ = std::any_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte('V'); });
		ping();
		return static_cast<ssize_t>(data.size());
	}

	/* No poll op in watchdog_fops: the VFS default. */
	uint32_t poll(const OpenFile &) override { return POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM; }

	IoctlResult ioctl(OpenFile &, IoctlCall &call) override
	{
		check();
		switch (call.cmd()) {
		case WDIOC_GETSUPPORT: {
			watchdog_info info{};
			info.options = kOptions;
			info.firmware_version = 0;
			std::memcpy(info.identity, config_.identity.data(),
				    std::min(config_.identity.size(), sizeof(info.identity) - 1));
			return call.replyArg(info);
		}
		case WDIOC_GETSTATUS: {
			int status = static_cast<int>(bootStatus() & kStatusFromBoot);
			if (allowRelease_)
				status |= WDIOF_MAGICCLOSE;
			if (keepalive_)
				status |= WDIOF_KEEPALIVEPING;
			call.writeUser(call.arg(), status);
			if (call.needsRetry())
				return call.done();
			keepalive_ = false; /* reported once per ping, like test_and_clear_bit(_WDOG_KEEPALIVE) */
			return call.done(0);
		}
		case WDIOC_GETBOOTSTATUS:
			return call.replyArg(static_cast<int>(bootStatus()));
		case WDIOC_SETOPTIONS: {
			auto val = call.argIn<int>();
			if (!val)
				return call.done();
			/* Neither flag: the driver had no ioctl op either, so -ENOIOCTLCMD, which the VFS makes ENOTTY. */
			int err = -ENOTTY;
			if (*val & WDIOS_DISABLECARD) {
				err = stopWatchdog();
				if (err < 0)
					return call.done(err);
			}
			if (*val & WDIOS_ENABLECARD)
				err = startWatchdog();
			publish();
			return call.done(err);
		}
		case WDIOC_KEEPALIVE:
			ping();
			return call.done(0);
		case WDIOC_SETTIMEOUT: {
			auto val = call.argIn<int>();
			if (!val) {
				call.writeUser(call.arg(), int{});
				return call.done();
			}
			unsigned t = static_cast<unsigned>(*val);
			if (t > UINT_MAX / 1000 || t < config_.minTimeout || t > config_.maxTimeout)
				return IoctlResult::error(-EINVAL);
			call.writeUser(call.arg(), static_cast<int>(t));
			if (call.needsRetry())
				return call.done();
			timeout_ = t;
			if (pretimeout_ >= timeout_)
				pretimeout_ = 0;
			programTimer();
			ping();
			publish();
			return call.done(0);
		}
		case WDIOC_GETTIMEOUT:
			return call.replyArg(static_cast<int>(timeout_));
		case WDIOC_SETPRETIMEOUT: {
			auto val = call.argIn<int>();
			if (!val)
				return call.done();
			unsigned t = static_cast<unsigned>(*val);
			if (t && timeout_ && t >= timeout_)
				return IoctlResult::error(-EINVAL);
			pretimeout_ = t;
			programTimer();
			publish();
			return call.done(0);
		}
		case WDIOC_GETPRETIMEOUT:
			return call.replyArg(static_cast<int>(pretimeout_));
		case WDIOC_GETTIMELEFT:
			return call.replyArg(static_cast<int>(timeLeft()));
		default:
			return IoctlResult::error(-ENOTTY);
		}
	}

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		check();
		if (args.size() > 1) {
			reply = injectVerbList(kVerbs);
			return -EINVAL;
		}
		return runInjectVerb(*this, kVerbs, args, reply);
	}

	static const InjectVerb<WatchdogModel> kVerbs[4];

private:
	int64_t now() const { return config_.clock(); }

	int injectStatus(const std::vector<std::string> &, std::string &reply)
	{
		reply = fmt::format("state={} timeleft={} timeout={} pretimeout={} expiries={} bootstatus={:#x} "
				    "nowayout={} open={}",
				    active_ ? "running" : "stopped", timeLeft(), timeout_, pretimeout_,
				    chip_.read(WatchdogTimer::kResets, now()), bootStatus(), config_.nowayout ? 1 : 0,
				    open_ ? 1 : 0);
		return 0;
	}

	int injectExpire(const std::vector<std::string> &, std::string &reply)
	{
		if (!active_) {
			reply = "the watchdog is not running";
			return -EINVAL;
		}
		/* The count runs out now: load 1 ms and let it pass. */
		int64_t t = now();
		chip_.write(WatchdogTimer::kLoad, 1, t - kNsPerMs);
		check(t);
		chip_.write(WatchdogTimer::kLoad, timeout_ * 1000, t); /* stopped now: this only re-arms LOAD */
		reply = fmt::format("expired (expiries={})", chip_.read(WatchdogTimer::kResets, t));
		return 0;
	}

	int injectClear(const std::vector<std::string> &, std::string &reply)
	{
		chip_.write(WatchdogTimer::kStatus, WatchdogTimer::kStatusTimeout | WatchdogTimer::kStatusPre, now());
		publish();
		reply = "boot status cleared";
		return 0;
	}

	int injectRegs(const std::vector<std::string> &, std::string &reply)
	{
		static constexpr std::pair<uint32_t, const char *> regs[] = {
			{ WatchdogTimer::kLoad, "load" },	{ WatchdogTimer::kValue, "value" },
			{ WatchdogTimer::kControl, "control" }, { WatchdogTimer::kPreload, "preload" },
			{ WatchdogTimer::kStatus, "status" },	{ WatchdogTimer::kResets, "resets" },
			{ WatchdogTimer::kId, "id" },
		};
		int64_t t = now();
		reply.clear();
		for (const auto &[off, name] : regs)
			reply += fmt::format("{}{:#04x} {}={:#x}", reply.empty() ? "" : "\n", off, name,
					     chip_.read(off, t));
		return 0;
	}

	/* The driver reads the reset cause at probe time; here, whenever asked. */
	uint32_t bootStatus()
	{
		return (chip_.read(WatchdogTimer::kStatus, now()) & WatchdogTimer::kStatusTimeout) ? WDIOF_CARDRESET
												   : 0;
	}

	unsigned timeLeft() { return chip_.read(WatchdogTimer::kValue, now()) / 1000; }

	/* The driver's set_timeout/set_pretimeout: LOAD and PRELOAD in ms (a running count restarts). */
	void programTimer()
	{
		int64_t t = now();
		chip_.write(WatchdogTimer::kPreload, pretimeout_ * 1000, t);
		chip_.write(WatchdogTimer::kLoad, timeout_ * 1000, t);
		uint32_t control = chip_.read(WatchdogTimer::kControl, t);
		control = pretimeout_ ? control | WatchdogTimer::kPreIntEn : control & ~WatchdogTimer::kPreIntEn;
		chip_.write(WatchdogTimer::kControl, control, t);
		rearm();
	}

	/* watchdog_start() */
	int startWatchdog()
	{
		if (active_)
			return 0;
		keepalive_ = true;
		int64_t t = now();
		chip_.write(WatchdogTimer::kPreload, pretimeout_ * 1000, t);
		chip_.write(WatchdogTimer::kLoad, timeout_ * 1000, t);
		chip_.write(WatchdogTimer::kControl,
			    WatchdogTimer::kEn | WatchdogTimer::kResEn | (pretimeout_ ? WatchdogTimer::kPreIntEn : 0),
			    t);
		active_ = true;
		DEVEMU_LOG(Debug, ctx_.name(), "watchdog started ({} s)", timeout_);
		rearm();
		return 0;
	}

	/* watchdog_stop() */
	int stopWatchdog()
	{
		if (config_.nowayout) {
			DEVEMU_LOG(Info, ctx_.name(), "nowayout prevents watchdog being stopped!");
			return -EBUSY;
		}
		if (!active_)
			return 0;
		chip_.write(WatchdogTimer::kControl, 0, now());
		active_ = false;
		DEVEMU_LOG(Debug, ctx_.name(), "watchdog stopped");
		rearm();
		return 0;
	}

	/* watchdog_ping() */
	void ping()
	{
		if (!active_)
			return;
		keepalive_ = true;
		chip_.write(WatchdogTimer::kKick, WatchdogTimer::kKickMagic, now());
		rearm();
	}

	void check() { check(now()); }

	/* Brings the timer block up to date; rearm() handles what it latched. */
	void check(int64_t t)
	{
		chip_.advance(t);
		rearm();
	}

	/* The timer block's interrupt and reset lines. */
	void handleEvents()
	{
		WatchdogTimer::Events e = chip_.takeEvents();
		if (e.pretimeout)
			DEVEMU_LOG(Warning, ctx_.name(), "watchdog pretimeout event ({} s before expiry)", pretimeout_);
		if (e.reset)
			expired();
	}

	/* The count ran out. A real one resets the machine; here it is logged and reported. */
	void expired()
	{
		active_ = false;
		uint32_t n = chip_.read(WatchdogTimer::kResets, now());
		DEVEMU_LOG(Warning, ctx_.name(),
			   "watchdog expired: no keepalive within {} s; the machine would reset now (expiry #{}){}",
			   timeout_, n, config_.onExpiry.empty() ? "" : fmt::format(", running: {}", config_.onExpiry));
		if (!config_.onExpiry.empty())
			runCommand(n);
		publish();
		ctx_.notify();
	}

	void runCommand(uint32_t expiries)
	{
		std::vector<std::string> env;
		for (char **e = environ; e && *e; e++)
			if (std::strncmp(*e, "DEVEMU_DEVICE=", 14) != 0 &&
			    std::strncmp(*e, "DEVEMU_EXPIRIES=", 16) != 0)
				env.emplace_back(*e);
		env.push_back("DEVEMU_DEVICE=" + ctx_.name());
		env.push_back(fmt::format("DEVEMU_EXPIRIES={}", expiries));
		std::vector<char *> envp;
		for (auto &s : env)
			envp.push_back(s.data());
		envp.push_back(nullptr);
		std::string sh = "/bin/sh", dashC = "-c", cmd = config_.onExpiry;
		char *argv[] = { sh.data(), dashC.data(), cmd.data(), nullptr };

		posix_spawn_file_actions_t actions;
		posix_spawn_file_actions_init(&actions);
		posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
		posix_spawnattr_t attr;
		posix_spawnattr_init(&attr);
		/* Its own process group, and default signal dispositions and mask. */
		sigset_t all, none;
		sigfillset(&all);
		sigemptyset(&none);
		posix_spawnattr_setsigdefault(&attr, &all);
		posix_spawnattr_setsigmask(&attr, &none);
		posix_spawnattr_setpgroup(&attr, 0);
		posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
		pid_t pid;
		int err = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp.data());
		posix_spawnattr_destroy(&attr);
		posix_spawn_file_actions_destroy(&actions);
		if (err) {
			DEVEMU_LOG(Error, ctx_.name(), "cannot run the on_expiry command: {}", strerror(err));
			return;
		}
		children_.push_back(pid);
		reap();
	}

	/* Collects finished on_expiry commands without ever blocking the strand. */
	void reap()
	{
		std::erase_if(children_, [this](pid_t pid) {
			int status;
			pid_t r = waitpid(pid, &status, WNOHANG);
			if (r == 0)
				return false;
			if (r == pid) {
				if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
					DEVEMU_LOG(Info, ctx_.name(), "on_expiry command (pid {}) finished", pid);
				else
					DEVEMU_LOG(Warning, ctx_.name(), "on_expiry command (pid {}) failed: {}", pid,
						   WIFEXITED(status)
							   ? fmt::format("exit status {}", WEXITSTATUS(status))
							   : fmt::format("signal {}", WTERMSIG(status)));
			}
			return true; /* done, or not ours to wait for (ECHILD) */
		});
		if (!children_.empty())
			reaper_.after(std::chrono::milliseconds(100), [this] { reap(); });
	}

	/* One timer at the next pre-timeout or expiry of the block. */
	void rearm()
	{
		handleEvents();
		timer_.cancel();
		int64_t t = now();
		auto next = chip_.nextEvent(t);
		if (!next)
			return;
		timer_.after(std::chrono::nanoseconds(std::max<int64_t>(*next - t, 0) + 100'000), [this] { check(); });
	}

	void publish()
	{
		int64_t t = now();
		ctx_.setStatusWord(kWordState, active_ ? 1 : 0);
		ctx_.setStatusWord(kWordTimeout, timeout_);
		ctx_.setStatusWord(kWordPretimeout, pretimeout_);
		ctx_.setStatusWord(kWordExpiries, chip_.read(WatchdogTimer::kResets, t));
		ctx_.setStatusWord(kWordBootStatus, bootStatus());
		ctx_.setStatusWord(kWordOpen, open_ ? 1 : 0);
	}

	DeviceContext &ctx_;
	WatchdogConfig config_;
	WatchdogTimer chip_;
	StrandTimer timer_;
	StrandTimer reaper_; /* polls for finished on_expiry commands */
	std::vector<pid_t> children_;
	unsigned timeout_ = 60;
	unsigned pretimeout_ = 0;
	bool open_ = false;
	bool active_ = false; /* WDOG_ACTIVE */
	bool allowRelease_ = false; /* _WDOG_ALLOW_RELEASE: the magic 'V' was the last write's */
	bool keepalive_ = false; /* _WDOG_KEEPALIVE: pinged since the last GETSTATUS */
};

const InjectVerb<WatchdogModel> WatchdogModel::kVerbs[4] = {
	{ "status", "", "state=running|stopped timeleft= timeout= pretimeout= expiries= bootstatus= nowayout= open=",
	  &WatchdogModel::injectStatus },
	{ "expire", "", "let the running count run out now", &WatchdogModel::injectExpire },
	{ "clear", "", "clear the boot status (the reset flag of a previous expiry)", &WatchdogModel::injectClear },
	{ "regs", "", "dump the timer block's registers", &WatchdogModel::injectRegs },
};

} // namespace

std::unique_ptr<Model> makeWatchdogModel(DeviceContext &ctx, WatchdogConfig config)
{
	return std::make_unique<WatchdogModel>(ctx, std::move(config));
}

void registerWatchdogModel(ModelRegistry &registry)
{
	registry.add({ "watchdog", "watchdog timer behind <linux/watchdog.h>: expiry is logged, never a reboot",
		       "timeout=SECONDS       initial timeout, 1 to 65535 (default 60)\n"
		       "pretimeout=SECONDS    initial pre-timeout, 0 (none) or below the timeout (default 0)\n"
		       "nowayout=yes|no       once started it cannot be stopped, like the nowayout module parameter "
		       "(default no)\n"
		       "identity=TEXT         what WDIOC_GETSUPPORT reports, up to 31 characters (default \"devemu "
		       "watchdog\")\n"
		       "on_expiry=COMMAND     run with /bin/sh -c on expiry, without waiting (default none)\n",
		       [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			       WatchdogConfig config;
			       config.timeout = static_cast<unsigned>(
				       opts.number("timeout", 60, config.minTimeout, config.maxTimeout));
			       config.pretimeout =
				       static_cast<unsigned>(opts.number("pretimeout", 0, 0, config.maxTimeout));
			       if (config.pretimeout && config.pretimeout >= config.timeout)
				       opts.fail("pretimeout",
						 fmt::format("must be below the timeout ({} s)", config.timeout));
			       config.nowayout = opts.flag("nowayout", false);
			       config.identity = opts.string("identity", config.identity);
			       if (config.identity.size() > 31)
				       opts.fail("identity", "at most 31 characters");
			       config.onExpiry = opts.string("on_expiry", "");
			       return makeWatchdogModel(ctx, std::move(config));
		       },
		       injectHelp(WatchdogModel::kVerbs) });
}

} // namespace devemu
