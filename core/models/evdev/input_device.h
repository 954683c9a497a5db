// SPDX-License-Identifier: MIT
// evdev: the input device (struct input_dev: identity, capabilities, state) and the input core's event filter.
#pragma once

#include "devemu/strand_timer.h"

#include <linux/input.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace devemu {

/* A capability or state bitmap, laid out as the kernel's unsigned long arrays on a little-endian machine. */
template<size_t Bits>
class Bitmap
{
public:
	bool test(unsigned bit) const { return bit < Bits && (bytes_[bit / 8] >> (bit % 8)) & 1; }
	void set(unsigned bit, bool on = true)
	{
		if (bit >= Bits)
			return;
		if (on)
			bytes_[bit / 8] = static_cast<uint8_t>(bytes_[bit / 8] | 1u << (bit % 8));
		else
			bytes_[bit / 8] = static_cast<uint8_t>(bytes_[bit / 8] & ~(1u << (bit % 8)));
	}
	bool any() const
	{
		return std::any_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b != 0; });
	}
	/* What bits_to_user() copies for maxbit: BITS_TO_LONGS(maxbit) longs. */
	std::vector<std::byte> bytes(unsigned maxbit) const
	{
		size_t len = std::min<size_t>((maxbit + 63) / 64 * 8, bytes_.size());
		auto b = std::as_bytes(std::span(bytes_)).first(len);
		return { b.begin(), b.end() };
	}
	/* bits_from_user(): up to len bytes, the rest cleared. */
	void assign(std::span<const std::byte> in)
	{
		bytes_.fill(0);
		std::memcpy(bytes_.data(), in.data(), std::min(in.size(), bytes_.size()));
	}
	void fill(bool on) { bytes_.fill(on ? 0xff : 0); }

private:
	std::array<uint8_t, (Bits + 63) / 64 * 8> bytes_{};
};

/* The input device: identity, capabilities, state (struct input_dev). */
struct InputDevice {
	std::string name;
	std::string phys; /* empty: none (ENOENT) */
	std::string uniq; /* empty: none (ENOENT) */
	input_id id{};
	Bitmap<EV_CNT> evBits;
	Bitmap<KEY_CNT> keyBits;
	Bitmap<REL_CNT> relBits;
	Bitmap<ABS_CNT> absBits;
	Bitmap<MSC_CNT> mscBits;
	Bitmap<LED_CNT> ledBits;
	Bitmap<SND_CNT> sndBits;
	Bitmap<FF_CNT> ffBits;
	Bitmap<SW_CNT> swBits;
	Bitmap<INPUT_PROP_CNT> props;
	/* State. */
	Bitmap<KEY_CNT> key;
	Bitmap<LED_CNT> led;
	Bitmap<SND_CNT> snd;
	Bitmap<SW_CNT> sw;
	bool hasAbsInfo = false;
	std::array<input_absinfo, ABS_CNT> abs{};
	std::array<int32_t, REP_CNT> rep{};
	bool softRepeat = false;
	/* The keyboard reports MSC_SCAN before each key change. */
	bool reportsScan = false;
	/* Scancode (index) -> keycode; empty: the device has no keymap. */
	std::vector<uint16_t> keymap;
};

/* One event as the input core passes it on (struct input_value). */
struct InputValue {
	uint16_t type;
	uint16_t code;
	int32_t value;
};

/* What the input core passes complete packets to (struct input_handler): the evdev surface here. */
class InputHandler
{
public:
	virtual ~InputHandler() = default;
	/* A packet (ending in SYN_REPORT) that passed the filter. */
	virtual void pass(std::span<const InputValue> vals) = 0;
	/* The autorepeat timer added a packet by itself: readers should hear of it. */
	virtual void repeated() = 0;
};

/*
 * The input core for one device: input_handle_event() filters each event by
 * capability and state, collects a packet until SYN_REPORT and passes it to
 * the handler; keys autorepeat in software; the keymap turns scancodes into
 * key codes. Runs on the device's strand.
 */
class InputCore
{
public:
	InputCore(const Strand &strand, InputDevice dev, InputHandler &handler);

	InputDevice &dev() { return dev_; }
	const InputDevice &dev() const { return dev_; }

	/* input_handle_event() */
	void event(uint16_t type, uint16_t code, int32_t value);
	/* Events held in the packet being collected. */
	size_t pending() const { return pending_.size(); }
	/* input_estimate_events_per_packet(): sizes the queues and the packet limit. */
	size_t eventsPerPacket() const;
	/* The device has this event (its type and code are among its capabilities). */
	bool supported(uint16_t type, uint16_t code) const;

	/* input_scancode_to_scalar() and the default keymap lookup; -EINVAL without a keymap or out of range. */
	int keymapIndex(const input_keymap_entry &ke, unsigned &index) const;
	/* input_set_keycode(): a key that left the keymap while held is released (a packet passed). */
	void setKeycode(unsigned index, uint16_t keycode);
	/* The scancode the keyboard sends for a key (the first keymap entry), if it has one. */
	std::optional<uint32_t> scancodeOf(uint16_t keycode) const;

private:
	void passValues(std::span<const InputValue> vals);
	void startRepeat(uint16_t code);
	void armRepeat(int ms);

	InputDevice dev_;
	InputHandler &handler_;
	size_t maxVals_;
	std::vector<InputValue> pending_; /* the packet being collected until SYN_REPORT */
	uint16_t repeatKey_ = 0;
	StrandTimer repeatTimer_;
};

} // namespace devemu
