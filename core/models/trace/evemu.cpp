// SPDX-License-Identifier: MIT
// evemu's device description (N: I: P: B: A:) and event (E:) lines as EVIOCG* answers and input_event reads.
#include "evemu.h"

#include "lines.h"

#include "devemu/number_text.h"

#include <fmt/core.h>

#include <linux/input.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

namespace devemu::trace {

namespace {

/* struct input_event as a 64-bit caller reads it (a 32-bit one has 4-byte time fields). */
struct Event64 {
	int64_t sec;
	int64_t usec;
	uint16_t type;
	uint16_t code;
	int32_t value;
};
static_assert(sizeof(Event64) == 24);

/* The bytes the kernel's evdev reports for its key, led, switch and sound state (longs, rounded up). */
constexpr uint32_t bitmapBytes(unsigned max)
{
	return (max / 64 + 1) * 8;
}

struct Description {
	std::string name;
	bool haveName = false;
	struct input_id id {};
	bool haveId = false;
	std::vector<uint8_t> props;
	std::map<unsigned, std::vector<uint8_t>> bits; /* event type -> its code bitmap */
	std::map<unsigned, struct input_absinfo> abs;
};

std::vector<std::string_view> words(std::string_view text)
{
	std::vector<std::string_view> out;
	size_t i = 0;
	while (i < text.size()) {
		while (i < text.size() && (text[i] == ' ' || text[i] == '\t'))
			i++;
		size_t start = i;
		while (i < text.size() && text[i] != ' ' && text[i] != '\t')
			i++;
		if (i > start)
			out.push_back(text.substr(start, i - start));
	}
	return out;
}

template<typename T>
std::vector<uint8_t> bytesOf(const T &value)
{
	auto p = reinterpret_cast<const uint8_t *>(&value);
	return { p, p + sizeof(T) };
}

TraceOp answer(uint32_t request, std::vector<uint8_t> out, int64_t result)
{
	TraceOp op;
	op.kind = OpKind::Ioctl;
	op.request = request;
	op.out = std::move(out);
	op.result = result;
	return op;
}

/* The EVIOCG* answers the description gives, and those of an evdev device with nothing pressed. */
void describe(const Description &d, std::vector<TraceOp> &ops)
{
	ops.push_back(answer(EVIOCGVERSION, bytesOf<int>(EV_VERSION), 0));
	if (d.haveId)
		ops.push_back(answer(EVIOCGID, bytesOf(d.id), 0));
	if (d.haveName) {
		std::vector<uint8_t> name(d.name.begin(), d.name.end());
		name.push_back(0);
		auto n = static_cast<uint32_t>(name.size());
		ops.push_back(answer(EVIOCGNAME(n), std::move(name), n));
	}
	ops.push_back(answer(EVIOCGPHYS(0), {}, -ENOENT));
	ops.push_back(answer(EVIOCGUNIQ(0), {}, -ENOENT));
	std::vector<uint8_t> props = d.props.empty() ? std::vector<uint8_t>(8) : d.props;
	auto n = static_cast<uint32_t>(props.size());
	ops.push_back(answer(EVIOCGPROP(n), std::move(props), n));
	for (const auto &[type, bytes] : d.bits) {
		auto len = static_cast<uint32_t>(bytes.size());
		ops.push_back(answer(EVIOCGBIT(type, len), bytes, len));
	}
	for (const auto &[code, info] : d.abs)
		ops.push_back(answer(EVIOCGABS(code), bytesOf(info), 0));
	ops.push_back(answer(EVIOCGKEY(bitmapBytes(KEY_MAX)), std::vector<uint8_t>(bitmapBytes(KEY_MAX)),
			     bitmapBytes(KEY_MAX)));
	ops.push_back(answer(EVIOCGLED(bitmapBytes(LED_MAX)), std::vector<uint8_t>(bitmapBytes(LED_MAX)),
			     bitmapBytes(LED_MAX)));
	ops.push_back(
		answer(EVIOCGSW(bitmapBytes(SW_MAX)), std::vector<uint8_t>(bitmapBytes(SW_MAX)), bitmapBytes(SW_MAX)));
	ops.push_back(answer(EVIOCGSND(bitmapBytes(SND_MAX)), std::vector<uint8_t>(bitmapBytes(SND_MAX)),
			     bitmapBytes(SND_MAX)));
	for (uint64_t grab : { 1, 0 }) { /* a replayed device is nobody else's: grabbing succeeds */
		TraceOp op = answer(EVIOCGRAB, {}, 0);
		op.arg = grab;
		ops.push_back(std::move(op));
	}
}

/* "SEC.USEC" of an E: line. */
bool parseTime(std::string_view text, std::chrono::microseconds &t)
{
	auto dot = text.find('.');
	if (dot == std::string_view::npos)
		return false;
	auto sec = parseUnsigned(text.substr(0, dot), INT32_MAX, 10);
	auto usec = parseUnsigned(text.substr(dot + 1), 999'999, 10);
	if (!sec || !usec || text.size() - dot - 1 != 6)
		return false;
	t = std::chrono::seconds(*sec) + std::chrono::microseconds(*usec);
	return true;
}

} // namespace

bool parseEvemu(std::string_view text, const std::string &name, Trace &trace, std::string &error)
{
	trace.path = name;
	trace.ops.clear();
	Description d;
	std::vector<TraceOp> events;
	std::chrono::microseconds last{ -1 };
	bool ok = forEachLine(text, [&](unsigned number, std::string_view line) {
		auto fail = [&](std::string why) {
			error = fmt::format("{}:{}: {}", name, number, why);
			return false;
		};
		if (!line.empty() && line.back() == '\r')
			line.remove_suffix(1);
		if (line.starts_with("N:")) {
			std::string_view value = line.substr(2);
			if (!value.empty() && value[0] == ' ')
				value.remove_prefix(1);
			d.name = std::string(value);
			d.haveName = true;
			return true;
		}
		/* Comments: a whole line, or (format 1.1 and later) the end of one. */
		if (auto hash = line.find('#'); hash != std::string_view::npos)
			line = line.substr(0, hash);
		auto w = words(line);
		if (w.empty())
			return true;
		std::string_view tag = w[0];
		auto hex = [&](size_t i, uint64_t max) { return parseUnsigned(w[i], max, 16); };
		if (tag == "I:") {
			if (w.size() != 5)
				return fail("expected I: BUSTYPE VENDOR PRODUCT VERSION (hex)");
			uint16_t v[4];
			for (size_t i = 0; i < 4; i++) {
				auto n = hex(i + 1, 0xffff);
				if (!n)
					return fail(fmt::format("'{}' is not a 16-bit hex number", w[i + 1]));
				v[i] = static_cast<uint16_t>(*n);
			}
			d.id = { v[0], v[1], v[2], v[3] };
			d.haveId = true;
		} else if (tag == "P:" || tag == "B:") {
			size_t first = 1;
			std::vector<uint8_t> *into = &d.props;
			if (tag == "B:") {
				auto type = w.size() > 1 ? hex(1, EV_MAX) : std::nullopt;
				if (!type)
					return fail(fmt::format(
						"expected B: TYPE BYTES... with TYPE a hex event type up to "
						"{:02x}",
						EV_MAX));
				into = &d.bits[static_cast<unsigned>(*type)];
				first = 2;
			}
			for (size_t i = first; i < w.size(); i++) {
				auto b = hex(i, 0xff);
				if (!b)
					return fail(fmt::format("'{}' is not a hex byte", w[i]));
				into->push_back(static_cast<uint8_t>(*b));
			}
		} else if (tag == "A:") {
			if (w.size() < 6 || w.size() > 7)
				return fail("expected A: CODE MIN MAX FUZZ FLAT [RESOLUTION]");
			auto code = hex(1, ABS_MAX);
			if (!code)
				return fail(
					fmt::format("'{}' is not an absolute axis (hex, up to {:02x})", w[1], ABS_MAX));
			int32_t v[5] = {};
			for (size_t i = 2; i < w.size(); i++) {
				auto n = parseInteger(w[i], INT32_MIN, INT32_MAX);
				if (!n)
					return fail(fmt::format("'{}' is not a number", w[i]));
				v[i - 2] = static_cast<int32_t>(*n);
			}
			d.abs[static_cast<unsigned>(*code)] = { 0, v[0], v[1], v[2], v[3], v[4] };
		} else if (tag == "L:" || tag == "S:") {
			/* LED and switch states: evdev state queries answer "all off" */
		} else if (tag == "E:") {
			if (w.size() != 5)
				return fail("expected E: SEC.USEC TYPE CODE VALUE");
			std::chrono::microseconds t;
			if (!parseTime(w[1], t))
				return fail(fmt::format("'{}' is not a time stamp (SEC.USEC, six digits)", w[1]));
			auto type = hex(2, 0xffff), code = hex(3, 0xffff);
			auto value = parseInteger(w[4], INT32_MIN, INT32_MAX);
			if (!type || !code || !value)
				return fail("TYPE and CODE are hex, VALUE a decimal number");
			Event64 e{ t.count() / 1'000'000, t.count() % 1'000'000, static_cast<uint16_t>(*type),
				   static_cast<uint16_t>(*code), static_cast<int32_t>(*value) };
			auto bytes = bytesOf(e);
			auto delay = last.count() < 0 || t < last ? std::chrono::microseconds(0) : t - last;
			last = t;
			if (!events.empty() && delay.count() == 0) {
				/* the same instant: one read returns them together (a SYN_REPORT frame) */
				events.back().data.insert(events.back().data.end(), bytes.begin(), bytes.end());
				events.back().result = static_cast<int64_t>(events.back().data.size());
				return true;
			}
			TraceOp op;
			op.kind = OpKind::Read;
			op.delay = delay;
			op.data = std::move(bytes);
			op.result = static_cast<int64_t>(op.data.size());
			op.line = number;
			events.push_back(std::move(op));
		} else {
			return fail(fmt::format("'{}' is not an evemu line (N: I: P: B: A: L: S: E:)", tag));
		}
		return true;
	});
	if (!ok)
		return false;
	if (!d.haveName && d.bits.empty() && events.empty()) {
		error = fmt::format("{}: no evemu description or events in it", name);
		return false;
	}
	describe(d, trace.ops);
	for (auto &op : events)
		trace.ops.push_back(std::move(op));
	return true;
}

bool readEvemu(const std::string &path, Trace &trace, std::string &error)
{
	return readAndParse(path, trace, error, parseEvemu);
}

} // namespace devemu::trace
