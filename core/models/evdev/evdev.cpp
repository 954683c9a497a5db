// SPDX-License-Identifier: MIT
// evdev: the evdev client surface (per-file queues, struct input_event reads, EVIOCG*/EVIOCS*, grab, masks); inject; registration.
#include "evdev_codes.h"
#include "input_device.h"
#include "input_profiles.h"

#include "devemu/clock.h"
#include "devemu/inject_text.h"
#include "devemu/inject_verbs.h"
#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/number_text.h"
#include "devemu/uapi/devemu.h"

#include <fmt/core.h>

#include <linux/input.h>
#include <poll.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <cerrno>
#include <deque>
#include <string>
#include <vector>

namespace devemu {

namespace {

/* struct input_event of a 64-bit caller: struct timeval, type, code, value. */
struct Event {
	int64_t sec;
	int64_t usec;
	uint16_t type;
	uint16_t code;
	int32_t value;
};
static_assert(sizeof(Event) == 24);
#if __SIZEOF_LONG__ == 8
static_assert(sizeof(struct input_event) == sizeof(Event));
#endif
constexpr size_t kEventSize = sizeof(Event);

/* struct input_event of a 32-bit (compat) caller: its struct timeval is two 32-bit longs. */
struct Event32 {
	int32_t sec;
	int32_t usec;
	uint16_t type;
	uint16_t code;
	int32_t value;
};
static_assert(sizeof(Event32) == 16);

/* The event size the caller of the current request uses (evdev's input_event_size()). */
size_t eventSize(const OpenFile &f)
{
	return f.compat ? sizeof(Event32) : kEventSize;
}

/* Writes e at out in the caller's layout (evdev's input_event_to_user()). */
void eventToUser(const OpenFile &f, const Event &e, std::byte *out)
{
	if (!f.compat) {
		std::memcpy(out, &e, sizeof(e));
		return;
	}
	Event32 c{ static_cast<int32_t>(e.sec), static_cast<int32_t>(e.usec), e.type, e.code, e.value };
	std::memcpy(out, &c, sizeof(c));
}

/* Reads an event in the caller's layout (evdev's input_event_from_user()). */
Event eventFromUser(const OpenFile &f, const std::byte *in)
{
	if (!f.compat) {
		Event e;
		std::memcpy(&e, in, sizeof(e));
		return e;
	}
	Event32 c;
	std::memcpy(&c, in, sizeof(c));
	return { c.sec, c.usec, c.type, c.code, c.value };
}

/* struct ff_effect: its union holds a pointer (ff_periodic_effect.custom_data), so it is 4 bytes smaller for a 32-bit caller. */
constexpr size_t kFfEffectSize = 48;
constexpr size_t kFfEffectSize32 = 44;
#if __SIZEOF_POINTER__ == 8
static_assert(sizeof(struct ff_effect) == kFfEffectSize);
#endif
static_assert(sizeof(struct input_absinfo) == 24 && sizeof(struct input_id) == 8);

/* EVIOCGBIT(ev, len) and friends without their size field. */
constexpr uint32_t withoutSize(uint32_t cmd)
{
	return cmd & ~(uint32_t(_IOC_SIZEMASK) << _IOC_SIZESHIFT);
}

/* One open file: its own queue of events (struct evdev_client). */
struct Client final : FileState {
	OpenFile *file = nullptr;
	/* Events not yet moved to the file's own receive FIFO (the core's produceFile()). */
	std::deque<Event> queue;
	size_t packetEnd = 0; /* events at the front up to the last SYN_REPORT: what read() may return */
	clockid_t clock = CLOCK_REALTIME;
	bool revoked = false;
	/* EVIOCSMASK masks by type (index 0: the types); empty: everything passes. */
	std::array<std::vector<std::byte>, EV_CNT> masks;
};

/* evdev_get_mask_cnt(): how many codes a type's event mask covers. */
unsigned maskCount(unsigned type)
{
	switch (type) {
	case 0:
		return EV_CNT;
	case EV_KEY:
		return KEY_CNT;
	case EV_REL:
		return REL_CNT;
	case EV_ABS:
		return ABS_CNT;
	case EV_MSC:
		return MSC_CNT;
	case EV_SW:
		return SW_CNT;
	case EV_LED:
		return LED_CNT;
	case EV_SND:
		return SND_CNT;
	case EV_FF:
		return FF_CNT;
	default:
		return 0;
	}
}

bool maskTest(const std::vector<std::byte> &mask, unsigned bit)
{
	return bit / 8 < mask.size() && (static_cast<uint8_t>(mask[bit / 8]) >> (bit % 8)) & 1;
}

class EvdevModel final : public Model, private InputHandler
{
public:
	EvdevModel(DeviceContext &ctx, InputDevice dev, size_t queueSize)
		: ctx_(ctx), input_(ctx.strand(), std::move(dev), *this), queueSize_(queueSize)
	{
		size_t perPacket = input_.eventsPerPacket();
		if (queueSize_ == 0) {
			/* evdev_compute_buffer_size(): room for 8 packets, at least 64 events, a power of two. */
			queueSize_ = 64;
			while (queueSize_ < perPacket * 8)
				queueSize_ *= 2;
		}
	}

	int open(OpenFile &f) override
	{
		auto c = std::make_unique<Client>();
		c->file = &f;
		clients_.push_back(c.get());
		f.state = std::move(c);
		return 0;
	}

	void release(OpenFile &f) override
	{
		auto *c = &client(f);
		if (grab_ == c)
			grab_ = nullptr;
		clients_.erase(std::remove(clients_.begin(), clients_.end(), c), clients_.end());
	}

	/*
	 * Whole events of complete packets (up to a SYN_REPORT), in the caller's
	 * layout (16 bytes for a 32-bit caller, 24 otherwise); a buffer smaller
	 * than one event is EINVAL.
	 */
	ssize_t read(OpenFile &f, std::span<std::byte> out) override
	{
		auto &c = client(f);
		const size_t size = eventSize(f);
		if (!out.empty() && out.size() < size)
			return -EINVAL;
		if (c.revoked)
			return -ENODEV;
		if (out.empty())
			return 0;
		if (c.packetEnd == 0)
			return -EAGAIN;
		size_t n = std::min(out.size() / size, c.packetEnd);
		for (size_t i = 0; i < n; i++) {
			eventToUser(f, c.queue.front(), out.data() + i * size);
			c.queue.pop_front();
		}
		c.packetEnd -= n;
		return static_cast<ssize_t>(n * size);
	}

	/*
	 * The queue of each open file moves into a receive FIFO of its own where the driver has one
	 * (the kernel shim serves read() from it): whole events of complete packets, in the 64-bit
	 * layout (a 32-bit reader's read comes by request, to read()).
	 */
	StreamSpec stream() const override
	{
		StreamSpec spec;
		spec.fileRecord = kEventSize;
		spec.fileRecordCompat = sizeof(Event32);
		spec.fileFifoSize = std::clamp<uint32_t>(std::bit_ceil(static_cast<uint32_t>(queueSize_ * kEventSize)),
							 DEVEMU_MIN_FIFO_SIZE, DEVEMU_MAX_FILE_FIFO_SIZE);
		return spec;
	}

	size_t produceFile(OpenFile &f, std::span<std::byte> out) override
	{
		auto &c = client(f);
		if (c.revoked)
			return 0;
		size_t n = std::min(out.size() / kEventSize, c.packetEnd);
		for (size_t i = 0; i < n; i++) {
			std::memcpy(out.data() + i * kEventSize, &c.queue.front(), kEventSize);
			c.queue.pop_front();
		}
		c.packetEnd -= n;
		return n * kEventSize;
	}

	void unproduceFile(OpenFile &f, std::span<const std::byte> records) override
	{
		auto &c = client(f);
		size_t n = records.size() / kEventSize;
		std::vector<Event> back(n);
		std::memcpy(back.data(), records.data(), n * kEventSize);
		c.queue.insert(c.queue.begin(), back.begin(), back.end());
		c.packetEnd += n; /* they were of complete packets */
	}

	/* Events written are injected into the device, as if it had produced them (input_inject_event). */
	ssize_t write(OpenFile &f, std::span<const std::byte> in) override
	{
		auto &c = client(f);
		const size_t size = eventSize(f);
		if (!in.empty() && in.size() < size)
			return -EINVAL;
		if (c.revoked)
			return -ENODEV;
		size_t n = in.size() / size;
		for (size_t i = 0; i < n; i++) {
			Event e = eventFromUser(f, in.data() + i * size);
			input_.event(e.type, e.code, e.value);
		}
		wakeReaders();
		return static_cast<ssize_t>(n * size);
	}

	IoctlResult ioctl(OpenFile &f, IoctlCall &call) override
	{
		auto &c = client(f);
		if (c.revoked)
			return IoctlResult::error(-ENODEV);
		uint32_t cmd = call.cmd();
		uint64_t arg = call.arg();

		switch (cmd) {
		case EVIOCGVERSION:
			return call.replyArg(int{ EV_VERSION });
		case EVIOCGID:
			return call.replyArg(dev_.id);
		case EVIOCGREP:
			if (!dev_.evBits.test(EV_REP))
				return IoctlResult::error(-ENOSYS);
			return call.replyArg(std::array<uint32_t, 2>{ static_cast<uint32_t>(dev_.rep[REP_DELAY]),
								      static_cast<uint32_t>(dev_.rep[REP_PERIOD]) });
		case EVIOCSREP: {
			if (!dev_.evBits.test(EV_REP))
				return IoctlResult::error(-ENOSYS);
			auto v = call.argIn<std::array<uint32_t, 2>>();
			if (!v)
				return call.done();
			input_.event(EV_REP, REP_DELAY, static_cast<int32_t>((*v)[0]));
			input_.event(EV_REP, REP_PERIOD, static_cast<int32_t>((*v)[1]));
			wakeReaders();
			return call.done(0);
		}
		case EVIOCRMFF:
			return IoctlResult::error(-ENOSYS); /* no force feedback */
		case EVIOCGEFFECTS:
			return call.replyArg(int{ 0 });
		case EVIOCGRAB:
			/* The argument is the value itself, not a pointer. */
			return call.done(arg ? grab(c) : ungrab(c));
		case EVIOCREVOKE:
			if (arg)
				return IoctlResult::error(-EINVAL);
			c.revoked = true;
			ctx_.divertFileStream(f, true); /* its reads: ENODEV, by request */
			ungrab(c);
			ctx_.notify(POLLHUP); /* blocked readers return ENODEV */
			return call.done(0);
		case EVIOCGMASK:
			return getMask(c, call);
		case EVIOCSMASK:
			return setMask(c, call);
		case EVIOCSCLOCKID: {
			auto id = call.argIn<int>();
			if (!id)
				return call.done();
			return call.done(setClock(c, *id));
		}
		case EVIOCGKEYCODE:
			return getKeycode(call, false);
		case EVIOCGKEYCODE_V2:
			return getKeycode(call, true);
		case EVIOCSKEYCODE:
			return setKeycode(call, false);
		case EVIOCSKEYCODE_V2:
			return setKeycode(call, true);
		}

		/* Commands with the length in their size field. */
		uint32_t size = _IOC_SIZE(cmd);
		switch (withoutSize(cmd)) {
		case withoutSize(EVIOCGPROP(0)):
			return bitsToUser(call, dev_.props.bytes(INPUT_PROP_MAX), size);
		case withoutSize(EVIOCGMTSLOTS(0)): {
			/* The kernel reads the code first; no multi-touch slots here. */
			auto code = call.argIn<uint32_t>();
			if (!code)
				return call.done();
			return IoctlResult::error(-EINVAL);
		}
		case withoutSize(EVIOCGKEY(0)):
			return getState(c, call, EV_KEY, dev_.key.bytes(KEY_MAX), size);
		case withoutSize(EVIOCGLED(0)):
			return getState(c, call, EV_LED, dev_.led.bytes(LED_MAX), size);
		case withoutSize(EVIOCGSND(0)):
			return getState(c, call, EV_SND, dev_.snd.bytes(SND_MAX), size);
		case withoutSize(EVIOCGSW(0)):
			return getState(c, call, EV_SW, dev_.sw.bytes(SW_MAX), size);
		case withoutSize(EVIOCGNAME(0)):
			return stringToUser(call, dev_.name, size);
		case withoutSize(EVIOCGPHYS(0)):
			return stringToUser(call, dev_.phys, size);
		case withoutSize(EVIOCGUNIQ(0)):
			return stringToUser(call, dev_.uniq, size);
		case withoutSize(EVIOCSFF): {
			if (size != (call.compat() ? kFfEffectSize32 : kFfEffectSize))
				return IoctlResult::error(-EFAULT);
			if (!call.readUser(arg, size))
				return call.done();
			return IoctlResult::error(-ENOSYS);
		}
		}

		if (_IOC_TYPE(cmd) != 'E')
			return IoctlResult::error(-EINVAL);
		unsigned nr = _IOC_NR(cmd);
		if (_IOC_DIR(cmd) == _IOC_READ) {
			if ((nr & ~EV_MAX) == _IOC_NR(EVIOCGBIT(0, 0)))
				return getBits(call, nr & EV_MAX, size);
			if ((nr & ~ABS_MAX) == _IOC_NR(EVIOCGABS(0))) {
				if (!dev_.hasAbsInfo)
					return IoctlResult::error(-EINVAL);
				auto b = std::as_bytes(std::span(&dev_.abs[nr & ABS_MAX], 1));
				putBytes(call, b.first(std::min<size_t>(size, b.size())));
				return call.done(0);
			}
		}
		if (_IOC_DIR(cmd) == _IOC_WRITE) {
			if ((nr & ~ABS_MAX) == _IOC_NR(EVIOCSABS(0))) {
				if (!dev_.hasAbsInfo)
					return IoctlResult::error(-EINVAL);
				size_t len = std::min<size_t>(size, sizeof(input_absinfo));
				auto in = call.readUser(arg, len);
				if (!in)
					return call.done();
				unsigned axis = nr & ABS_MAX;
				if (axis == ABS_MT_SLOT)
					return IoctlResult::error(-EINVAL);
				input_absinfo info{};
				std::memcpy(&info, in->data(), len);
				dev_.abs[axis] = info;
				return call.done(0);
			}
		}
		return IoctlResult::error(-EINVAL);
	}

	uint32_t poll(const OpenFile &f) override
	{
		const auto &c = f.stateAs<Client>();
		if (c.revoked)
			return POLLHUP | POLLERR;
		return POLLOUT | POLLWRNORM | (c.packetEnd ? POLLIN | POLLRDNORM : 0);
	}

	uint32_t readable(const OpenFile &f) override
	{
		return static_cast<uint32_t>(f.stateAs<Client>().packetEnd * eventSize(f));
	}
	uint32_t writable(const OpenFile &) override { return UINT32_MAX; }
	uint64_t dropped() const override { return dropped_; }

	int inject(const std::vector<std::string> &args, std::string &reply) override
	{
		size_t before = delivered_;
		int ret = runInjectVerb(*this, kVerbs, args, reply);
		if (ret < 0 || args[0] == "state")
			return ret;
		wakeReaders();
		if (input_.pending())
			reply += fmt::format("{} event(s) pending until syn\n", input_.pending());
		reply += fmt::format("{} event(s) delivered to {} open file(s)", delivered_ - before, clients_.size());
		return 0;
	}

	static const InjectVerb<EvdevModel> kVerbs[9];

private:
	static Client &client(OpenFile &f) { return f.stateAs<Client>(); }

	/* evdev_events(): to the grabbing file only, else to every open file. */
	void pass(std::span<const InputValue> vals) override
	{
		const std::array<int64_t, 3> now{ clockNs(CLOCK_REALTIME), clockNs(CLOCK_MONOTONIC),
						  clockNs(CLOCK_BOOTTIME) };
		if (grab_) {
			deliver(*grab_, vals, now);
		} else {
			for (Client *c : clients_)
				deliver(*c, vals, now);
		}
	}

	void repeated() override { wakeReaders(); }

	/* evdev_pass_values(): stamp with the file's clock, filter by its masks, queue. */
	void deliver(Client &c, std::span<const InputValue> vals, const std::array<int64_t, 3> &now)
	{
		if (c.revoked)
			return;
		int64_t ns = now[c.clock == CLOCK_MONOTONIC ? 1 : c.clock == CLOCK_BOOTTIME ? 2 : 0];
		for (const auto &v : vals) {
			if (filtered(c, v.type, v.code))
				continue;
			if (v.type == EV_SYN && v.code == SYN_REPORT && c.packetEnd == c.queue.size())
				continue; /* an empty report */
			passEvent(c, { ns / kNsPerSec, ns % kNsPerSec / 1000, v.type, v.code, v.value });
			delivered_++;
		}
	}

	static bool filtered(const Client &c, unsigned type, unsigned code)
	{
		if (type == EV_SYN)
			return false;
		if (!c.masks[0].empty() && !maskTest(c.masks[0], type))
			return true;
		unsigned count = maskCount(type);
		if (!count || code >= count)
			return false;
		return !c.masks[type].empty() && !maskTest(c.masks[type], code);
	}

	/* The events of a file's queue, with those waiting in its receive FIFO. */
	size_t queued(const Client &c) const { return c.queue.size() + ctx_.fileStreamBytes(*c.file) / kEventSize; }

	/* __pass_event(): a full queue drops everything but the newest event, behind a SYN_DROPPED. */
	void passEvent(Client &c, const Event &e)
	{
		c.queue.push_back(e);
		if (size_t n = queued(c); n >= queueSize_) {
			dropped_ += n - 1;
			ctx_.discardFileStream(*c.file);
			c.queue.clear();
			c.queue.push_back({ e.sec, e.usec, EV_SYN, SYN_DROPPED, 0 });
			c.queue.push_back(e);
			c.packetEnd = 0;
		}
		if (e.type == EV_SYN && e.code == SYN_REPORT)
			c.packetEnd = c.queue.size();
	}

	/* __evdev_queue_syn_dropped(): readable only once the next packet completes. */
	void queueSynDropped(Client &c)
	{
		int64_t ns = clockNs(c.clock);
		c.queue.push_back({ ns / kNsPerSec, ns % kNsPerSec / 1000, EV_SYN, SYN_DROPPED, 0 });
		if (queued(c) >= queueSize_) {
			ctx_.discardFileStream(*c.file);
			c.queue.erase(c.queue.begin(), c.queue.end() - 1);
			c.packetEnd = 0;
		}
	}

	/* __evdev_flush_queue(): drop queued events of a type, and the reports left empty. */
	static void flushQueue(Client &c, uint16_t type)
	{
		std::deque<Event> kept;
		size_t packetEnd = 0;
		unsigned num = 1; /* a leading SYN_REPORT is kept */
		for (const Event &e : c.queue) {
			bool report = e.type == EV_SYN && e.code == SYN_REPORT;
			if (e.type == type || (report && num == 0))
				continue;
			kept.push_back(e);
			num++;
			if (report) {
				num = 0;
				packetEnd = kept.size();
			}
		}
		c.queue = std::move(kept);
		c.packetEnd = packetEnd;
	}

	void wakeReaders()
	{
		if (delivered_ != notified_) {
			notified_ = delivered_;
			ctx_.notify(POLLIN);
		}
	}

	int grab(Client &c)
	{
		if (grab_)
			return -EBUSY;
		grab_ = &c;
		return 0;
	}
	int ungrab(Client &c)
	{
		if (grab_ != &c)
			return -EINVAL;
		grab_ = nullptr;
		return 0;
	}

	int setClock(Client &c, int id)
	{
		if (id != CLOCK_REALTIME && id != CLOCK_MONOTONIC && id != CLOCK_BOOTTIME)
			return -EINVAL;
		if (c.clock != id) {
			c.clock = id;
			/* Events stamped with the old clock are flushed, and the reader told so. */
			if (!c.queue.empty()) {
				c.queue.clear();
				c.packetEnd = 0;
				queueSynDropped(c);
			}
		}
		return 0;
	}

	/*
	 * Copies bytes to the caller's argument as the kernel does: exactly as
	 * many as there are. A restricted (FUSE) driver carries exactly
	 * _IOC_SIZE(cmd) bytes, so there they are padded with zeros to it.
	 */
	static bool putBytes(IoctlCall &call, std::span<const std::byte> bytes)
	{
		if (call.restricted()) {
			std::vector<std::byte> padded(_IOC_SIZE(call.cmd()));
			std::copy_n(bytes.begin(), std::min(bytes.size(), padded.size()), padded.begin());
			return call.writeUser(call.arg(), padded);
		}
		if (bytes.empty())
			return true;
		return call.writeUser(call.arg(), bytes);
	}

	/* bits_to_user(): BITS_TO_LONGS(maxbit) longs cut to the asked length; returns the length. */
	static IoctlResult bitsToUser(IoctlCall &call, const std::vector<std::byte> &bits, uint32_t size)
	{
		size_t len = std::min<size_t>(bits.size(), size);
		putBytes(call, std::span(bits).first(len));
		return call.done(static_cast<int>(len));
	}

	/* str_to_user(): the string with its NUL, cut to the asked length; ENOENT when the device has none. */
	static IoctlResult stringToUser(IoctlCall &call, const std::string &s, uint32_t size)
	{
		if (s.empty())
			return IoctlResult::error(-ENOENT);
		size_t len = std::min<size_t>(s.size() + 1, size);
		putBytes(call, std::as_bytes(std::span(s.c_str(), len)));
		return call.done(static_cast<int>(len));
	}

	/* handle_eviocgbit(): the capability bits of one event type (type 0: the types). */
	IoctlResult getBits(IoctlCall &call, unsigned type, uint32_t size)
	{
		switch (type) {
		case 0:
			return bitsToUser(call, dev_.evBits.bytes(EV_MAX), size);
		case EV_KEY:
			return bitsToUser(call, dev_.keyBits.bytes(KEY_MAX), size);
		case EV_REL:
			return bitsToUser(call, dev_.relBits.bytes(REL_MAX), size);
		case EV_ABS:
			return bitsToUser(call, dev_.absBits.bytes(ABS_MAX), size);
		case EV_MSC:
			return bitsToUser(call, dev_.mscBits.bytes(MSC_MAX), size);
		case EV_LED:
			return bitsToUser(call, dev_.ledBits.bytes(LED_MAX), size);
		case EV_SND:
			return bitsToUser(call, dev_.sndBits.bytes(SND_MAX), size);
		case EV_FF:
			return bitsToUser(call, dev_.ffBits.bytes(FF_MAX), size);
		case EV_SW:
			return bitsToUser(call, dev_.swBits.bytes(SW_MAX), size);
		default:
			return IoctlResult::error(-EINVAL);
		}
	}

	/* evdev_handle_get_val(): the state bits; the file's queued events of that type are dropped (they are stale now). */
	IoctlResult getState(Client &c, IoctlCall &call, uint16_t type, const std::vector<std::byte> &bits,
			     uint32_t size)
	{
		size_t len = std::min<size_t>(bits.size(), size);
		putBytes(call, std::span(bits).first(len));
		if (call.needsRetry())
			return call.done();
		flushQueue(c, type);
		return call.done(static_cast<int>(len));
	}

	/* EVIOCGMASK: struct input_mask {type, codes_size, codes_ptr}; the mask bytes, the rest of the buffer cleared. */
	IoctlResult getMask(const Client &c, IoctlCall &call)
	{
		auto m = call.argIn<input_mask>();
		if (!m)
			return call.done();
		unsigned count = maskCount(m->type);
		size_t size = (count + 63) / 64 * 8;
		size_t min = std::min<size_t>(m->codes_size, size);
		std::vector<std::byte> out(m->codes_size);
		if (count > 0) {
			const auto &mask = c.masks[m->type];
			for (size_t i = 0; i < min; i++)
				out[i] =
					mask.empty() ? std::byte{ 0xff } : (i < mask.size() ? mask[i] : std::byte{ 0 });
		}
		if (!out.empty())
			call.writeUser(m->codes_ptr, out);
		return call.done(0);
	}

	/* EVIOCSMASK: unknown types are accepted and ignored (forward compatibility). */
	IoctlResult setMask(Client &c, IoctlCall &call)
	{
		auto m = call.argIn<input_mask>();
		if (!m)
			return call.done();
		unsigned count = maskCount(m->type);
		if (count == 0)
			return call.done(0);
		size_t len = std::min<size_t>((count - 1 + 63) / 64 * 8, m->codes_size);
		std::vector<std::byte> mask((count + 63) / 64 * 8);
		if (len) {
			auto in = call.readUser(m->codes_ptr, len);
			if (!in)
				return call.done();
			std::copy(in->begin(), in->end(), mask.begin());
		}
		c.masks[m->type] = std::move(mask);
		return call.done(0);
	}

	IoctlResult getKeycode(IoctlCall &call, bool v2)
	{
		input_keymap_entry ke{};
		if (v2) {
			auto in = call.argIn<input_keymap_entry>();
			if (!in)
				return call.done();
			ke = *in;
		} else {
			auto scancode = call.argIn<uint32_t>();
			if (!scancode)
				return call.done();
			ke.len = sizeof(uint32_t);
			std::memcpy(ke.scancode, &*scancode, sizeof(uint32_t));
		}
		unsigned index = 0;
		if (int err = input_.keymapIndex(ke, index))
			return IoctlResult::error(err);
		ke.keycode = dev_.keymap[index];
		ke.index = static_cast<uint16_t>(index);
		ke.len = sizeof(index);
		std::memset(ke.scancode, 0, sizeof(ke.scancode));
		std::memcpy(ke.scancode, &index, sizeof(index));
		if (v2)
			call.writeUser(call.arg(), ke);
		else
			call.writeUser(call.arg() + sizeof(uint32_t), static_cast<uint32_t>(ke.keycode));
		return call.done(0);
	}

	IoctlResult setKeycode(IoctlCall &call, bool v2)
	{
		input_keymap_entry ke{};
		if (v2) {
			auto in = call.argIn<input_keymap_entry>();
			if (!in)
				return call.done();
			ke = *in;
			if (ke.len > sizeof(ke.scancode))
				return IoctlResult::error(-EINVAL);
		} else {
			auto pair = call.argIn<std::array<uint32_t, 2>>();
			if (!pair)
				return call.done();
			ke.len = sizeof(uint32_t);
			std::memcpy(ke.scancode, &(*pair)[0], sizeof(uint32_t));
			ke.keycode = (*pair)[1];
		}
		if (ke.keycode > KEY_MAX)
			return IoctlResult::error(-EINVAL);
		unsigned index = 0;
		if (int err = input_.keymapIndex(ke, index))
			return IoctlResult::error(err);
		input_.setKeycode(index, static_cast<uint16_t>(ke.keycode));
		wakeReaders();
		return call.done(0);
	}

	/* A key change as the keyboard reports it: MSC_SCAN first when the device reports scancodes. */
	void keyEvent(uint16_t code, int32_t value)
	{
		if (dev_.reportsScan && value != 2)
			if (auto sc = input_.scancodeOf(code))
				input_.event(EV_MSC, MSC_SCAN, static_cast<int32_t>(*sc));
		input_.event(EV_KEY, code, value);
	}

	/* key, abs, rel CODE VALUE */
	int injectValue(const std::vector<std::string> &args, std::string &reply)
	{
		const std::string &verb = args[0];
		uint16_t type = verb == "key" ? EV_KEY : verb == "abs" ? EV_ABS : EV_REL;
		if (args.size() != 3) {
			reply = fmt::format("{} CODE VALUE", verb);
			return -EINVAL;
		}
		return injectOne(type, args[1], args[2], reply);
	}

	int injectEvent(const std::vector<std::string> &args, std::string &reply)
	{
		auto type = args.size() == 4 ? parseType(args[1]) : std::nullopt;
		if (!type) {
			reply = "event TYPE CODE VALUE (TYPE: EV_KEY... or a number)";
			return -EINVAL;
		}
		return injectOne(*type, args[2], args[3], reply);
	}

	int injectSyn(const std::vector<std::string> &args, std::string &reply)
	{
		if (args.size() != 1) {
			reply = "syn takes no arguments";
			return -EINVAL;
		}
		size_t pending = input_.pending();
		input_.event(EV_SYN, SYN_REPORT, 0);
		reply = pending ? "" : "nothing pending: an empty report is not delivered\n";
		return 0;
	}

	int injectState(const std::vector<std::string> &, std::string &reply)
	{
		reply = describe();
		return 0;
	}

	int injectOne(uint16_t type, const std::string &codeText, const std::string &valueText, std::string &reply)
	{
		auto code = parseCode(type, codeText);
		auto value = parseInteger(valueText, INT32_MIN, INT32_MAX);
		if (!code || !value) {
			reply = fmt::format("'{} {}' is not a {} code and a value", codeText, valueText,
					    typeName(type));
			return -EINVAL;
		}
		if (!input_.supported(type, *code)) {
			reply = fmt::format("this device has no {} {}", typeName(type), codeText);
			return -EINVAL;
		}
		if (type == EV_KEY)
			keyEvent(*code, static_cast<int32_t>(*value));
		else
			input_.event(type, *code, static_cast<int32_t>(*value));
		return 0;
	}

	/* tap KEY...: press, report, release, report, for each; type TEXT: the same for characters (US layout). */
	int injectTaps(const std::vector<std::string> &args, std::string &reply)
	{
		std::vector<std::pair<uint16_t, bool>> keys;
		if (args[0] == "tap") {
			for (size_t i = 1; i < args.size(); i++) {
				auto code = parseCode(EV_KEY, args[i]);
				if (!code || !dev_.keyBits.test(*code)) {
					reply = fmt::format("this device has no key {}", args[i]);
					return -EINVAL;
				}
				keys.push_back({ *code, false });
			}
		} else {
			for (char ch : joinInjectArgs(args)) {
				auto k = keyForChar(ch);
				if (!k || !dev_.keyBits.test(k->first) ||
				    (k->second && !dev_.keyBits.test(KEY_LEFTSHIFT))) {
					reply = fmt::format("cannot type '{}' on this device", ch);
					return -EINVAL;
				}
				keys.push_back(*k);
			}
		}
		if (keys.empty()) {
			reply = fmt::format("{} needs at least one {}", args[0],
					    args[0] == "tap" ? "key" : "character");
			return -EINVAL;
		}
		for (auto [code, shift] : keys) {
			if (shift) {
				keyEvent(KEY_LEFTSHIFT, 1);
				input_.event(EV_SYN, SYN_REPORT, 0);
			}
			keyEvent(code, 1);
			input_.event(EV_SYN, SYN_REPORT, 0);
			keyEvent(code, 0);
			input_.event(EV_SYN, SYN_REPORT, 0);
			if (shift) {
				keyEvent(KEY_LEFTSHIFT, 0);
				input_.event(EV_SYN, SYN_REPORT, 0);
			}
		}
		return 0;
	}

	/* scan SCANCODE VALUE: what the keyboard hardware sends; the keymap turns it into a key. */
	int injectScan(const std::vector<std::string> &args, std::string &reply)
	{
		auto sc = args.size() == 3 ? parseInteger(args[1], INT64_MIN, INT64_MAX) : std::nullopt;
		auto value = args.size() == 3 ? parseInteger(args[2], INT32_MIN, INT32_MAX) : std::nullopt;
		if (dev_.keymap.empty()) {
			reply = "this device has no keymap";
			return -EINVAL;
		}
		long index = sc.value_or(-1);
		if (!value || index < 0 || static_cast<size_t>(index) >= dev_.keymap.size()) {
			reply = fmt::format("scan SCANCODE VALUE, SCANCODE from 0 to {:#x}", dev_.keymap.size() - 1);
			return -EINVAL;
		}
		if (dev_.reportsScan)
			input_.event(EV_MSC, MSC_SCAN, static_cast<int32_t>(index));
		if (uint16_t code = dev_.keymap[static_cast<size_t>(index)])
			input_.event(EV_KEY, code, static_cast<int32_t>(*value));
		return 0;
	}

	std::string describe() const
	{
		std::string out =
			fmt::format("\"{}\" bus 0x{:04x} vendor 0x{:04x} product 0x{:04x} version 0x{:04x}\n",
				    dev_.name, dev_.id.bustype, dev_.id.vendor, dev_.id.product, dev_.id.version);
		std::string keys;
		for (unsigned k = 0; k < KEY_CNT; k++)
			if (dev_.key.test(k))
				keys += " " + codeName(EV_KEY, k);
		out += fmt::format("keys down:{}\n", keys.empty() ? " none" : keys);
		if (dev_.evBits.test(EV_LED)) {
			std::string leds;
			for (unsigned l = 0; l < LED_CNT; l++)
				if (dev_.led.test(l))
					leds += " " + codeName(EV_LED, l);
			out += fmt::format("leds on:{}\n", leds.empty() ? " none" : leds);
		}
		for (unsigned a = 0; a < ABS_CNT; a++)
			if (dev_.absBits.test(a)) {
				const auto &i = dev_.abs[a];
				out += fmt::format("{} value {} min {} max {} fuzz {} flat {} resolution {}\n",
						   codeName(EV_ABS, a), i.value, i.minimum, i.maximum, i.fuzz, i.flat,
						   i.resolution);
			}
		if (dev_.evBits.test(EV_REP))
			out += fmt::format("repeat delay {} ms period {} ms\n", dev_.rep[REP_DELAY],
					   dev_.rep[REP_PERIOD]);
		size_t revoked =
			std::count_if(clients_.begin(), clients_.end(), [](const Client *c) { return c->revoked; });
		out += fmt::format("open files {} (revoked {}), grabbed {}, queue {} events, dropped {}\n",
				   clients_.size(), revoked, grab_ ? "yes" : "no", queueSize_, dropped_);
		return out;
	}

	DeviceContext &ctx_;
	InputCore input_;
	InputDevice &dev_ = input_.dev();
	size_t queueSize_;
	std::vector<Client *> clients_;
	Client *grab_ = nullptr;
	uint64_t delivered_ = 0;
	uint64_t notified_ = 0;
	uint64_t dropped_ = 0;
};

const InjectVerb<EvdevModel> EvdevModel::kVerbs[9] = {
	{ "key", "CODE VALUE", "a key or button change (KEY_A 1); held in the packet until syn",
	  &EvdevModel::injectValue },
	{ "tap", "CODE...", "press and release each key, each with SYN_REPORT", &EvdevModel::injectTaps },
	{ "type", "TEXT", "tap the keys that type TEXT (US layout)", &EvdevModel::injectTaps },
	{ "scan", "SCANCODE VALUE", "a keyboard scancode, through the keymap (EVIOCSKEYCODE remaps it)",
	  &EvdevModel::injectScan },
	{ "abs", "AXIS VALUE", "an absolute axis (ABS_X 100); held until syn", &EvdevModel::injectValue },
	{ "rel", "AXIS VALUE", "a relative axis; held until syn", &EvdevModel::injectValue },
	{ "event", "TYPE CODE VALUE", "any event, through the input core's filters", &EvdevModel::injectEvent },
	{ "syn", "", "SYN_REPORT: deliver the packet to every open file (or the grabbing one)",
	  &EvdevModel::injectSyn },
	{ "state", "", "keys down, LEDs, axes, open files, grab", &EvdevModel::injectState },
};

std::unique_ptr<Model> makeEvdev(ModelOptions &opts, DeviceContext &ctx)
{
	auto dev = inputDeviceFromOptions(opts, ctx.name());
	if (!dev)
		return nullptr;
	size_t queue = opts.number("queue", 0, 0, 65536);
	if (queue && (queue < 8 || (queue & (queue - 1)))) {
		opts.fail("queue", "a power of two from 8 to 65536 events");
		return nullptr;
	}
	if (!opts.error().empty())
		return nullptr;
	return std::make_unique<EvdevModel>(ctx, std::move(*dev), queue);
}

} // namespace

void registerEvdevModel(ModelRegistry &registry)
{
	registry.add(
		{ "evdev", "input device as /dev/input/eventN: keyboard, pen tablet or joystick (<linux/input.h>)",
		  "type=keyboard|tablet|joystick  what the device is (default keyboard)\n"
		  "name=TEXT             EVIOCGNAME (default \"devemu TYPE\")\n"
		  "phys=TEXT             EVIOCGPHYS (default devemu/NAME/input0)\n"
		  "uniq=TEXT             EVIOCGUNIQ (default none: ENOENT)\n"
		  "bus=N vendor=N product=N version=N  EVIOCGID (default BUS_VIRTUAL, 0, 1/2/3 by type, 1)\n"
		  "abs_x=MIN:MAX abs_y=MIN:MAX  axis ranges of a tablet (0:32767) or joystick (-32768:32767)\n"
		  "repeat=DELAY/PERIOD|off  keyboard autorepeat in ms (default 250/33; off: no EV_REP)\n"
		  "scan=true|false       keyboard reports MSC_SCAN before each key (default true)\n"
		  "queue=EVENTS          per-open event queue, a power of two (default like the kernel: 64 or 128)\n",
		  makeEvdev, injectHelp(EvdevModel::kVerbs) });
}

} // namespace devemu
