// SPDX-License-Identifier: MIT
// The trace format: writing and reading operation lines, and umockdev's script format read as it is.
#include "trace.h"

#include "ioctl_table.h"
#include "lines.h"

#include "devemu/inject_text.h"
#include "devemu/number_text.h"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace devemu::trace {

namespace {

constexpr std::string_view kHeader = "devemu-trace";

const std::string_view kOpNames[] = { "open", "read", "write", "ioctl", "poll", "release" };

bool isText(uint8_t b)
{
	return (b >= 0x20 && b < 0x7f) || b == '\n' || b == '\r' || b == '\t';
}

std::string formatHex(const std::vector<uint8_t> &bytes)
{
	std::string out;
	for (uint8_t b : bytes)
		out += fmt::format("{:02x}", b);
	return out;
}

/* A quoted string with the escapes of inject_text.h (\n \r \t \0 \\ \" \xNN), or hex digits in pairs. */
bool parseBytes(std::string_view text, std::vector<uint8_t> &out, std::string &error)
{
	out.clear();
	if (text.empty()) {
		error = "no bytes (write \"\" for none)";
		return false;
	}
	if (text.front() != '"')
		return parseHexBytes(text, out, error);
	if (text.size() < 2 || text.back() != '"') {
		error = "a quoted string without its closing quote";
		return false;
	}
	return parseEscapedBytes(text.substr(1, text.size() - 2), out, error);
}

/* +SECONDS with up to six decimals. */
bool parseDelay(std::string_view text, std::chrono::microseconds &delay, std::string &error)
{
	error = fmt::format("'{}' is not a delay (expected +SECONDS, e.g. +0.012500)", text);
	if (text.size() < 2 || text[0] != '+')
		return false;
	text.remove_prefix(1);
	auto dot = text.find('.');
	auto whole = parseUnsigned(text.substr(0, dot), 1'000'000'000, 10);
	if (!whole)
		return false;
	uint64_t us = *whole * 1'000'000;
	if (dot != std::string_view::npos) {
		std::string_view frac = text.substr(dot + 1);
		if (frac.empty() || frac.size() > 6)
			return false;
		uint64_t scale = 100'000;
		for (char c : frac) {
			if (c < '0' || c > '9')
				return false;
			us += static_cast<uint64_t>(c - '0') * scale;
			scale /= 10;
		}
	}
	delay = std::chrono::microseconds(us);
	return true;
}

bool parseResult(std::string_view text, int64_t &result, std::string &error)
{
	if (text.size() > 2 && text[0] == '-' && text[1] == 'E') {
		for (int e = 1; e < 200; e++) {
			const char *name = strerrorname_np(e);
			if (name && text.substr(1) == name) {
				result = -e;
				return true;
			}
		}
		error = fmt::format("'{}' is not an errno name", text.substr(1));
		return false;
	}
	auto n = parseInteger(text, INT32_MIN, INT64_MAX);
	if (!n) {
		error = fmt::format("'{}' is not a result (a number or -ENAME)", text);
		return false;
	}
	result = *n;
	return true;
}

/* Splits at spaces that are not inside a quoted string. */
bool splitTokens(std::string_view line, std::vector<std::string_view> &tokens, std::string &error)
{
	size_t i = 0;
	while (i < line.size()) {
		while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == line.size())
			break;
		size_t start = i;
		bool quoted = false;
		for (; i < line.size(); i++) {
			char c = line[i];
			if (quoted && c == '\\') {
				i++;
				continue;
			}
			if (c == '"')
				quoted = !quoted;
			else if (!quoted && (c == ' ' || c == '\t'))
				break;
		}
		if (quoted) {
			error = "a quoted string without its closing quote";
			return false;
		}
		tokens.push_back(line.substr(start, std::min(i, line.size()) - start));
	}
	return true;
}

} // namespace

std::string_view opName(OpKind kind)
{
	return kOpNames[static_cast<size_t>(kind)];
}

std::string formatBytes(const std::vector<uint8_t> &bytes)
{
	size_t text = 0;
	for (uint8_t b : bytes)
		text += isText(b);
	if (bytes.empty())
		return "\"\"";
	if (text * 4 < bytes.size() * 3)
		return formatHex(bytes);
	std::string out = "\"";
	for (uint8_t b : bytes) {
		switch (b) {
		case '\n':
			out += "\\n";
			break;
		case '\r':
			out += "\\r";
			break;
		case '\t':
			out += "\\t";
			break;
		case '\\':
			out += "\\\\";
			break;
		case '"':
			out += "\\\"";
			break;
		default:
			if (b >= 0x20 && b < 0x7f)
				out += static_cast<char>(b);
			else
				out += fmt::format("\\x{:02x}", b);
		}
	}
	return out + "\"";
}

std::string formatResult(int64_t result)
{
	if (result < 0 && result > -200) {
		if (const char *name = strerrorname_np(static_cast<int>(-result)))
			return fmt::format("-{}", name);
	}
	return fmt::format("{}", result);
}

std::string formatOp(const TraceOp &op)
{
	auto us = op.delay.count();
	std::string out = fmt::format("{} {} +{}.{:06d}", opName(op.kind), op.file, us / 1'000'000,
				      static_cast<int>(us % 1'000'000));
	switch (op.kind) {
	case OpKind::Open:
		out += fmt::format(" flags={:#o} result={}", op.flags, formatResult(op.result));
		break;
	case OpKind::Read:
		out += fmt::format(" result={}", formatResult(op.result));
		if (op.result >= 0)
			out += fmt::format(" data={}", formatBytes(op.data));
		break;
	case OpKind::Write:
		out += fmt::format(" data={} result={}", formatBytes(op.data), formatResult(op.result));
		if (op.fuzz)
			out += fmt::format(" fuzz={}", op.fuzz);
		break;
	case OpKind::Ioctl: {
		out += fmt::format(" request={}", ioctlName(op.request));
		auto layout = ioctlLayout(op.request);
		if (layout && layout->arg == IoctlArg::Value)
			out += fmt::format(" arg={:#x}", op.arg);
		if (!op.in.empty())
			out += fmt::format(" in={}", formatHex(op.in));
		if (!op.out.empty())
			out += fmt::format(" out={}", formatHex(op.out));
		out += fmt::format(" result={}", formatResult(op.result));
		break;
	}
	case OpKind::Poll:
		out += fmt::format(" events={:#x} revents={:#x}", op.flags, op.revents);
		break;
	case OpKind::Release:
		break;
	}
	return out;
}

bool parseOp(std::string_view line, TraceOp &op, std::string &error)
{
	std::vector<std::string_view> tokens;
	if (!splitTokens(line, tokens, error))
		return false;
	if (tokens.size() < 3) {
		error = "expected OPERATION FILE +DELAY [KEY=VALUE...]";
		return false;
	}
	op = TraceOp{};
	bool known = false;
	for (size_t i = 0; i < std::size(kOpNames); i++)
		if (tokens[0] == kOpNames[i]) {
			op.kind = static_cast<OpKind>(i);
			known = true;
		}
	if (!known) {
		error = fmt::format("unknown operation '{}' (expected open, read, write, ioctl, poll or release)",
				    tokens[0]);
		return false;
	}
	auto file = parseUnsigned(tokens[1], UINT32_MAX, 10);
	if (!file) {
		error = fmt::format("'{}' is not a file number", tokens[1]);
		return false;
	}
	op.file = static_cast<uint32_t>(*file);
	if (!parseDelay(tokens[2], op.delay, error))
		return false;

	/* Which keys each operation takes, and which it needs. */
	std::vector<std::string_view> allowed, required;
	switch (op.kind) {
	case OpKind::Open:
		allowed = { "flags", "result" };
		required = { "result" };
		break;
	case OpKind::Read:
		allowed = { "data", "result" };
		required = { "result" };
		break;
	case OpKind::Write:
		allowed = { "data", "result", "fuzz" };
		required = { "data", "result" };
		break;
	case OpKind::Ioctl:
		allowed = { "request", "arg", "in", "out", "result" };
		required = { "request", "result" };
		break;
	case OpKind::Poll:
		allowed = { "events", "revents" };
		required = { "revents" };
		break;
	case OpKind::Release:
		break;
	}
	std::vector<std::string_view> seen;
	for (size_t i = 3; i < tokens.size(); i++) {
		std::string_view token = tokens[i];
		auto eq = token.find('=');
		if (eq == std::string_view::npos || eq == 0) {
			error = fmt::format("'{}' is not KEY=VALUE", token);
			return false;
		}
		std::string_view key = token.substr(0, eq), value = token.substr(eq + 1);
		if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
			std::string list;
			for (auto a : allowed)
				list += (list.empty() ? "" : ", ") + std::string(a);
			error = fmt::format("{} takes no '{}' (its keys: {})", opName(op.kind), key,
					    list.empty() ? "none" : list);
			return false;
		}
		if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
			error = fmt::format("'{}' given twice", key);
			return false;
		}
		seen.push_back(key);
		std::string why;
		bool ok = true;
		if (key == "result") {
			ok = parseResult(value, op.result, why);
		} else if (key == "data") {
			ok = parseBytes(value, op.data, why);
		} else if (key == "in") {
			ok = parseBytes(value, op.in, why);
		} else if (key == "out") {
			ok = parseBytes(value, op.out, why);
		} else if (key == "request") {
			auto r = parseIoctlRequest(value);
			ok = r.has_value();
			op.request = r.value_or(0);
			if (!ok)
				why = "not an ioctl name of the table nor a number";
		} else if (key == "fuzz") {
			auto f = parseUnsigned(value, 100, 10);
			ok = f.has_value();
			op.fuzz = static_cast<unsigned>(f.value_or(0));
			if (!ok)
				why = "expected a percentage, 0 to 100";
		} else {
			auto n = parseUnsigned(value, key == "arg" ? UINT64_MAX : UINT32_MAX);
			ok = n.has_value();
			if (!ok)
				why = "expected a number";
			else if (key == "arg")
				op.arg = *n;
			else if (key == "flags" || key == "events")
				op.flags = static_cast<uint32_t>(*n);
			else
				op.revents = static_cast<uint32_t>(*n);
		}
		if (!ok) {
			error = fmt::format("{}: {}", key, why);
			return false;
		}
	}
	for (auto key : required)
		if (std::find(seen.begin(), seen.end(), key) == seen.end()) {
			error = fmt::format("{} needs {}=", opName(op.kind), key);
			return false;
		}
	if (op.kind == OpKind::Read && op.result > 0 && op.data.size() != static_cast<uint64_t>(op.result)) {
		error = fmt::format("read result={} but data holds {} bytes", op.result, op.data.size());
		return false;
	}
	return true;
}

bool parseTrace(std::string_view text, const std::string &name, Trace &trace, std::string &error)
{
	trace.path = name;
	trace.ops.clear();
	bool header = false;
	/* A last line without its newline is where a copy or a recording was cut short: errors there say so. */
	const bool cut = !text.empty() && text.back() != '\n';
	const auto lines = static_cast<unsigned>(std::count(text.begin(), text.end(), '\n')) + (cut ? 1 : 0);
	bool ok = forEachLine(text, [&](unsigned number, std::string_view line) {
		if (!line.empty() && line.back() == '\r')
			line.remove_suffix(1);
		auto first = line.find_first_not_of(" \t");
		if (first == std::string_view::npos || line[first] == '#')
			return true;
		line.remove_prefix(first);
		if (!header) {
			std::string expected = fmt::format("{} {}", kHeader, kTraceVersion);
			if (line.substr(0, kHeader.size()) != kHeader) {
				error = fmt::format("{}:{}: expected the header '{}' before the first operation", name,
						    number, expected);
				return false;
			}
			if (line != expected) {
				error = fmt::format("{}:{}: '{}': this reader knows version {} ('{}')", name, number,
						    line, kTraceVersion, expected);
				return false;
			}
			header = true;
			return true;
		}
		TraceOp op;
		std::string why;
		if (!parseOp(line, op, why)) {
			error = fmt::format("{}:{}: {}{}", name, number, why,
					    cut && number == lines
						    ? " (the file ends in this line without a newline: cut short?)"
						    : "");
			return false;
		}
		op.line = number;
		trace.ops.push_back(std::move(op));
		return true;
	});
	if (ok && !header) {
		error = fmt::format("{}: empty: no '{} {}' header", name, kHeader, kTraceVersion);
		return false;
	}
	return ok;
}

bool readTrace(const std::string &path, Trace &trace, std::string &error)
{
	return readAndParse(path, trace, error, parseTrace);
}

/*
 * umockdev's script format (docs/script-format.txt): "OP DELAY_MS DATA" per
 * line; bytes below 32 are written ^ and the byte + 64, ^ itself as ^`. Its
 * replay reads the delay with scanf("%u "), which skips every blank after it,
 * and so does this reader.
 */
bool parseUmockdevScript(std::string_view text, const std::string &name, Trace &trace, std::string &error)
{
	trace.path = name;
	trace.ops.clear();
	unsigned fuzz = 0;
	bool stopped = false;
	std::chrono::microseconds carried{ 0 };
	return forEachLine(text, [&](unsigned number, std::string_view line) {
		if (stopped || line.empty())
			return true;
		auto fail = [&](std::string why) {
			error = fmt::format("{}:{}: {}", name, number, why);
			return false;
		};
		char op = line[0];
		if (op == 'Q') {
			stopped = true;
			return true;
		}
		if (op != 'r' && op != 'w' && op != 'f')
			return fail(
				fmt::format("unknown operation '{}' (an umockdev script has r, w, f and Q lines)", op));
		if (line.size() < 2 || line[1] != ' ')
			return fail(fmt::format("expected '{} DELAY DATA'", op));
		size_t i = 2;
		while (i < line.size() && line[i] == ' ')
			i++;
		size_t digits = i;
		while (i < line.size() && line[i] >= '0' && line[i] <= '9')
			i++;
		auto value = parseUnsigned(line.substr(digits, i - digits), UINT32_MAX, 10);
		if (!value)
			return fail(fmt::format("'{}' is not a number (the delay in ms, or f's percentage)",
						line.substr(digits, line.find(' ', digits) - digits)));
		while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (op == 'f') {
			if (*value > 100)
				return fail(fmt::format("fuzz {} is not a percentage", *value));
			fuzz = static_cast<unsigned>(*value);
			return true;
		}
		TraceOp t;
		t.kind = op == 'r' ? OpKind::Read : OpKind::Write;
		t.delay = std::chrono::milliseconds(*value);
		t.fuzz = op == 'w' ? fuzz : 0;
		t.line = number;
		for (; i < line.size(); i++) {
			if (line[i] != '^') {
				t.data.push_back(static_cast<uint8_t>(line[i]));
				continue;
			}
			if (++i == line.size())
				return fail("a ^ at the end of the line (escapes are ^ and one character)");
			char c = line[i];
			if (c == '`')
				t.data.push_back('^');
			else if (c >= 64 && c < 96)
				t.data.push_back(static_cast<uint8_t>(c - 64));
			else
				return fail(
					fmt::format("'^{}' is not an escape (^@ to ^_ for bytes 0-31, ^` for ^)", c));
		}
		t.result = static_cast<int64_t>(t.data.size());
		if (t.data.empty()) {
			carried += t.delay; /* nothing to read or match: its delay goes to the next operation */
			return true;
		}
		t.delay += carried;
		carried = {};
		trace.ops.push_back(std::move(t));
		return true;
	});
}

bool readUmockdevScript(const std::string &path, Trace &trace, std::string &error)
{
	return readAndParse(path, trace, error, parseUmockdevScript);
}

int TraceWriter::open(const std::string &path, std::string &error)
{
	int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int err = errno;
		error = fmt::format("cannot create the trace {}: {}", path, std::strerror(err));
		return -err;
	}
	fd_.reset(fd);
	path_ = path;
	std::string header = fmt::format("{} {}\n", kHeader, kTraceVersion);
	if (::write(fd, header.data(), header.size()) != static_cast<ssize_t>(header.size())) {
		int err = errno ? errno : EIO;
		error = fmt::format("cannot write the trace {}: {}", path, std::strerror(err));
		fd_.reset();
		return -err;
	}
	return 0;
}

void TraceWriter::append(TraceOp op)
{
	append(std::move(op), std::chrono::steady_clock::now());
}

void TraceWriter::append(TraceOp op, std::chrono::steady_clock::time_point when)
{
	if (!fd_.isValid() || failed_)
		return;
	auto now = started_ ? std::max(when, last_) : when;
	op.delay = started_ ? std::chrono::duration_cast<std::chrono::microseconds>(now - last_)
			    : std::chrono::microseconds(0);
	started_ = true;
	last_ = now;
	std::string line = formatOp(op) + "\n";
	if (::write(fd_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
		failed_ = true; /* a full disk: the trace ends here rather than with half a line */
	else
		count_++;
}

} // namespace devemu::trace
