// SPDX-License-Identifier: MIT
// watchdog: the watchdog_dev semantics of <linux/watchdog.h> over the timer block (ioctls, magic close, nowayout); registration.
#include "watchdog.h"

#include "expiry_command.h"
#include "watchdog_timer.h"

#include "devemu/clock.h"
#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/strand_timer.h"

#include <fmt/core.h>

#include <linux/watchdog.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>

namespace devemu {

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
		: ctx_(ctx), config_(std::move(config)), timer_(ctx.strand()),
		  onExpiry_(ctx.strand(), ctx.name(), config_.onExpiry)
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
			   timeout_, n, onExpiry_.empty() ? "" : fmt::format(", running: {}", onExpiry_.command()));
		if (!onExpiry_.empty())
			onExpiry_.run(n);
		publish();
		ctx_.notify();
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
	ExpiryCommand onExpiry_;
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
