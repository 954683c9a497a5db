// SPDX-License-Identifier: MIT
// evdev: the input core for one device: filtering by capability and state, packets, software autorepeat, the keymap.
#include "input_device.h"

#include <cerrno>
#include <chrono>

namespace devemu {

namespace {

/* input_defuzz_abs_event(): small moves around the last value are noise. */
int32_t defuzz(int32_t value, int32_t old, int32_t fuzz)
{
	if (fuzz) {
		if (value > old - fuzz / 2 && value < old + fuzz / 2)
			return old;
		if (value > old - fuzz && value < old + fuzz)
			return (old * 3 + value) / 4;
		if (value > old - fuzz * 2 && value < old + fuzz * 2)
			return (old + value) / 2;
	}
	return value;
}

/* A state bit (key, switch, LED, sound) passes only if the device has it and the value flips it. */
template<size_t N>
bool flipState(const Bitmap<N> &caps, Bitmap<N> &state, uint16_t code, int32_t value)
{
	if (!caps.test(code) || state.test(code) == (value != 0))
		return false;
	state.set(code, value != 0);
	return true;
}

} // namespace

InputCore::InputCore(const Strand &strand, InputDevice dev, InputHandler &handler)
	: dev_(std::move(dev)), handler_(handler), maxVals_(eventsPerPacket() + 2), repeatTimer_(strand)
{}

size_t InputCore::eventsPerPacket() const
{
	size_t events = 1; /* SYN_REPORT */
	if (dev_.evBits.test(EV_ABS))
		for (unsigned i = 0; i < ABS_CNT; i++)
			events += dev_.absBits.test(i);
	if (dev_.evBits.test(EV_REL))
		for (unsigned i = 0; i < REL_CNT; i++)
			events += dev_.relBits.test(i);
	return events + 7; /* room for KEY and MSC events */
}

/* input_handle_event(): filter by capability and state, collect the packet, flush it at SYN_REPORT. */
void InputCore::event(uint16_t type, uint16_t code, int32_t value)
{
	if (!dev_.evBits.test(type))
		return;
	bool pass = false, flush = false;
	switch (type) {
	case EV_SYN:
		pass = code == SYN_REPORT || code == SYN_CONFIG || code == SYN_MT_REPORT;
		flush = code == SYN_REPORT;
		break;
	case EV_KEY:
		if (value == 2)
			pass = dev_.keyBits.test(code); /* autorepeat bypasses the state */
		else
			pass = flipState(dev_.keyBits, dev_.key, code, value);
		break;
	case EV_SW:
		pass = flipState(dev_.swBits, dev_.sw, code, value);
		break;
	case EV_ABS:
		if (dev_.absBits.test(code)) {
			input_absinfo &a = dev_.abs[code];
			value = defuzz(value, a.value, a.fuzz);
			pass = a.value != value;
			a.value = value;
		}
		break;
	case EV_REL:
		pass = dev_.relBits.test(code) && value;
		break;
	case EV_MSC:
		pass = dev_.mscBits.test(code);
		break;
	case EV_LED:
		pass = flipState(dev_.ledBits, dev_.led, code, value);
		break;
	case EV_SND:
		pass = flipState(dev_.sndBits, dev_.snd, code, value);
		break;
	case EV_REP:
		if (code <= REP_MAX && value >= 0 && dev_.rep[code] != value) {
			dev_.rep[code] = value;
			pass = true;
		}
		break;
	case EV_FF:
		pass = value >= 0;
		break;
	case EV_PWR:
		pass = true;
		break;
	}
	if (pass)
		pending_.push_back({ type, code, value });
	if (flush) {
		if (pending_.size() >= 2)
			passValues(pending_);
		pending_.clear();
	} else if (pending_.size() >= maxVals_ - 2) {
		/* A packet longer than the device's estimate is cut with a SYN_REPORT. */
		pending_.push_back({ EV_SYN, SYN_REPORT, 1 });
		passValues(pending_);
		pending_.clear();
	}
}

/* input_pass_values(): to the handler, then autorepeat. */
void InputCore::passValues(std::span<const InputValue> vals)
{
	handler_.pass(vals);
	for (const auto &v : vals)
		if (v.type == EV_KEY && v.value != 2 && dev_.evBits.test(EV_REP)) {
			if (v.value)
				startRepeat(v.code);
			else
				repeatTimer_.cancel();
		}
}

/* The input core's software autorepeat: value 2 after rep[REP_DELAY] ms, then every rep[REP_PERIOD] ms. */
void InputCore::startRepeat(uint16_t code)
{
	if (!dev_.softRepeat || !dev_.rep[REP_PERIOD] || !dev_.rep[REP_DELAY])
		return;
	repeatKey_ = code;
	armRepeat(dev_.rep[REP_DELAY]);
}

void InputCore::armRepeat(int ms)
{
	repeatTimer_.after(std::chrono::milliseconds(ms), [this] {
		if (!dev_.key.test(repeatKey_) || !dev_.keyBits.test(repeatKey_))
			return;
		event(EV_KEY, repeatKey_, 2);
		event(EV_SYN, SYN_REPORT, 1);
		handler_.repeated();
		if (dev_.rep[REP_PERIOD])
			armRepeat(dev_.rep[REP_PERIOD]);
	});
}

bool InputCore::supported(uint16_t type, uint16_t code) const
{
	if (!dev_.evBits.test(type))
		return false;
	switch (type) {
	case EV_KEY:
		return dev_.keyBits.test(code);
	case EV_ABS:
		return dev_.absBits.test(code);
	case EV_REL:
		return dev_.relBits.test(code);
	case EV_MSC:
		return dev_.mscBits.test(code);
	case EV_LED:
		return dev_.ledBits.test(code);
	case EV_SND:
		return dev_.sndBits.test(code);
	case EV_SW:
		return dev_.swBits.test(code);
	case EV_REP:
		return code <= REP_MAX;
	default:
		return true;
	}
}

int InputCore::keymapIndex(const input_keymap_entry &ke, unsigned &index) const
{
	if (dev_.keymap.empty())
		return -EINVAL;
	if (ke.flags & INPUT_KEYMAP_BY_INDEX) {
		index = ke.index;
	} else {
		switch (ke.len) {
		case 1:
			index = ke.scancode[0];
			break;
		case 2: {
			uint16_t v;
			std::memcpy(&v, ke.scancode, 2);
			index = v;
			break;
		}
		case 4: {
			uint32_t v;
			std::memcpy(&v, ke.scancode, 4);
			index = v;
			break;
		}
		default:
			return -EINVAL;
		}
	}
	return index < dev_.keymap.size() ? 0 : -EINVAL;
}

void InputCore::setKeycode(unsigned index, uint16_t keycode)
{
	uint16_t old = dev_.keymap[index];
	dev_.keymap[index] = keycode;
	dev_.keyBits.set(old, std::find(dev_.keymap.begin(), dev_.keymap.end(), old) != dev_.keymap.end());
	dev_.keyBits.set(keycode);
	dev_.keyBits.set(KEY_RESERVED, false);
	/* A key that left the keymap while held is released. */
	if (!dev_.keyBits.test(old) && dev_.key.test(old)) {
		dev_.key.set(old, false);
		std::array<InputValue, 2> up{ InputValue{ EV_KEY, old, 0 }, InputValue{ EV_SYN, SYN_REPORT, 0 } };
		passValues(up);
	}
}

std::optional<uint32_t> InputCore::scancodeOf(uint16_t keycode) const
{
	auto it = std::find(dev_.keymap.begin(), dev_.keymap.end(), keycode);
	if (it == dev_.keymap.end())
		return std::nullopt;
	return static_cast<uint32_t>(it - dev_.keymap.begin());
}

} // namespace devemu
