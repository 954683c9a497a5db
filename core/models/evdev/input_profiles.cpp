// SPDX-License-Identifier: MIT
// evdev: the keyboard (a PC keymap, LEDs, autorepeat), pen tablet and joystick descriptions built from the options.
#include "input_profiles.h"

#include "devemu/number_text.h"

#include <fmt/core.h>

#include <tuple>

namespace devemu {

namespace {

/* The keyboard's keymap: XT scancode set 1 (e0-prefixed codes at 0x80 | code) to key codes; a 105-key PC keyboard. */
std::vector<uint16_t> pcKeymap()
{
	std::vector<uint16_t> map(256, KEY_RESERVED);
	for (uint16_t sc = 0x01; sc <= 0x53; sc++)
		map[sc] = sc; /* the main block: Linux key codes are set-1 scancodes */
	map[0x56] = KEY_102ND;
	map[0x57] = KEY_F11;
	map[0x58] = KEY_F12;
	const std::pair<uint8_t, uint16_t> extended[] = {
		{ 0x1c, KEY_KPENTER },	 { 0x1d, KEY_RIGHTCTRL }, { 0x20, KEY_MUTE },	{ 0x2e, KEY_VOLUMEDOWN },
		{ 0x30, KEY_VOLUMEUP },	 { 0x35, KEY_KPSLASH },	  { 0x37, KEY_SYSRQ },	{ 0x38, KEY_RIGHTALT },
		{ 0x45, KEY_PAUSE },	 { 0x47, KEY_HOME },	  { 0x48, KEY_UP },	{ 0x49, KEY_PAGEUP },
		{ 0x4b, KEY_LEFT },	 { 0x4d, KEY_RIGHT },	  { 0x4f, KEY_END },	{ 0x50, KEY_DOWN },
		{ 0x51, KEY_PAGEDOWN },	 { 0x52, KEY_INSERT },	  { 0x53, KEY_DELETE }, { 0x5b, KEY_LEFTMETA },
		{ 0x5c, KEY_RIGHTMETA }, { 0x5d, KEY_COMPOSE },	  { 0x5e, KEY_POWER },
	};
	for (auto [sc, key] : extended)
		map[0x80 | sc] = key;
	return map;
}

/* "MIN:MAX" with signed numbers. */
bool parseRange(const std::string &s, int32_t &min, int32_t &max)
{
	size_t colon = s.find(':');
	if (colon == std::string::npos)
		return false;
	auto lo = parseInteger(s.substr(0, colon), INT32_MIN, INT32_MAX);
	auto hi = parseInteger(s.substr(colon + 1), INT32_MIN, INT32_MAX);
	if (!lo || !hi || *lo >= *hi)
		return false;
	min = static_cast<int32_t>(*lo);
	max = static_cast<int32_t>(*hi);
	return true;
}

} // namespace

std::optional<InputDevice> inputDeviceFromOptions(ModelOptions &opts, const std::string &deviceName)
{
	std::string type = opts.choice("type", "keyboard", { "keyboard", "tablet", "joystick" });
	InputDevice dev;
	dev.name = opts.string("name", "devemu " + type);
	dev.phys = opts.string("phys", "devemu/" + deviceName + "/input0");
	dev.uniq = opts.string("uniq", "");
	dev.id.bustype = static_cast<uint16_t>(opts.number("bus", BUS_VIRTUAL, 0, 0xffff));
	dev.id.vendor = static_cast<uint16_t>(opts.number("vendor", 0, 0, 0xffff));
	dev.id.product = static_cast<uint16_t>(opts.number("product",
							   type == "keyboard" ? 1
							   : type == "tablet" ? 2
									      : 3,
							   0, 0xffff));
	dev.id.version = static_cast<uint16_t>(opts.number("version", 1, 0, 0xffff));
	dev.evBits.set(EV_SYN);
	dev.evBits.set(EV_KEY);

	if (type == "keyboard") {
		for (const char *key : { "abs_x", "abs_y" })
			if (opts.string(key, "") != "")
				opts.fail(key, "only tablets and joysticks have axes");
		dev.reportsScan = opts.flag("scan", true);
		std::string repeat = opts.string("repeat", "250/33");
		dev.keymap = pcKeymap();
		for (uint16_t k : dev.keymap)
			if (k)
				dev.keyBits.set(k);
		if (dev.reportsScan) {
			dev.evBits.set(EV_MSC);
			dev.mscBits.set(MSC_SCAN);
		}
		dev.evBits.set(EV_LED);
		for (unsigned led : { LED_NUML, LED_CAPSL, LED_SCROLLL })
			dev.ledBits.set(led);
		if (repeat != "off") {
			size_t slash = repeat.find('/');
			auto delay = slash == std::string::npos ? std::nullopt
								: parseInteger(repeat.substr(0, slash), 1, 10000);
			auto period = slash == std::string::npos ? std::nullopt
								 : parseInteger(repeat.substr(slash + 1), 1, 10000);
			if (!delay || !period) {
				opts.fail("repeat",
					  fmt::format("'{}' is not DELAY/PERIOD in ms (e.g. 250/33) or off", repeat));
				return std::nullopt;
			}
			dev.evBits.set(EV_REP);
			dev.softRepeat = true;
			dev.rep[REP_DELAY] = static_cast<int32_t>(*delay);
			dev.rep[REP_PERIOD] = static_cast<int32_t>(*period);
		}
	} else {
		for (const char *key : { "scan", "repeat" })
			if (opts.string(key, "") != "")
				opts.fail(key, "only keyboards have this option");
		bool tablet = type == "tablet";
		int32_t xmin = tablet ? 0 : -32768, xmax = tablet ? 32767 : 32767, ymin = xmin, ymax = xmax;
		for (auto [key, lo, hi] :
		     { std::tuple{ "abs_x", &xmin, &xmax }, std::tuple{ "abs_y", &ymin, &ymax } }) {
			std::string text = opts.string(key, "");
			if (!text.empty() && !parseRange(text, *lo, *hi)) {
				opts.fail(key, fmt::format("'{}' is not MIN:MAX with MIN < MAX", text));
				return std::nullopt;
			}
		}
		dev.evBits.set(EV_ABS);
		dev.hasAbsInfo = true;
		auto axis = [&](unsigned code, int32_t min, int32_t max, int32_t fuzz, int32_t flat, int32_t res) {
			dev.absBits.set(code);
			dev.abs[code] = { 0, min, max, fuzz, flat, res };
			if (min > 0 || max < 0)
				dev.abs[code].value = min;
		};
		if (tablet) {
			/* A pen tablet: tool, tip and barrel buttons, position and pressure. */
			for (unsigned k : { BTN_TOOL_PEN, BTN_TOOL_RUBBER, BTN_TOUCH, BTN_STYLUS, BTN_STYLUS2 })
				dev.keyBits.set(k);
			axis(ABS_X, xmin, xmax, 0, 0, 100);
			axis(ABS_Y, ymin, ymax, 0, 0, 100);
			axis(ABS_PRESSURE, 0, 2047, 0, 0, 0);
			dev.props.set(INPUT_PROP_POINTER);
		} else {
			/* A flight-style joystick: stick, throttle, hat and eight buttons. */
			for (unsigned k = BTN_TRIGGER; k <= BTN_BASE2; k++)
				dev.keyBits.set(k);
			axis(ABS_X, xmin, xmax, 16, 128, 0);
			axis(ABS_Y, ymin, ymax, 16, 128, 0);
			axis(ABS_THROTTLE, 0, 255, 0, 0, 0);
			axis(ABS_HAT0X, -1, 1, 0, 0, 0);
			axis(ABS_HAT0Y, -1, 1, 0, 0, 0);
		}
	}
	return dev;
}

} // namespace devemu
