// SPDX-License-Identifier: MIT
// Traces: the dialogue between programs and a device, one operation per line; the reader, the writer, umockdev scripts.
#pragma once

#include "devemu/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace devemu::trace {

/* The format version a trace's header line names ("devemu-trace 1"). */
constexpr unsigned kTraceVersion = 1;

enum class OpKind { Open, Read, Write, Ioctl, Poll, Release };

/* "open", "read", ... as a trace spells them. */
std::string_view opName(OpKind kind);

/* One operation: what a program did on a file of the device, and what the device answered. */
struct TraceOp {
	OpKind kind = OpKind::Read;
	uint32_t file = 0; /* which open file (the order of opens in the recording) */
	std::chrono::microseconds delay{ 0 }; /* since the previous operation of the trace */
	int64_t result = 0; /* bytes moved, the ioctl's return value, or -errno */
	uint32_t flags = 0; /* open: O_* flags; poll: the events asked for */
	uint32_t revents = 0; /* poll */
	std::vector<uint8_t> data; /* read: the bytes returned; write: the bytes written */
	uint32_t request = 0; /* ioctl */
	uint64_t arg = 0; /* ioctl whose argument is a value (TCFLSH) */
	std::vector<uint8_t> in; /* ioctl: the caller memory the driver read */
	std::vector<uint8_t> out; /* ioctl: the caller memory the driver wrote */
	unsigned fuzz = 0; /* write: percent of bytes that may differ on replay (umockdev's f lines) */
	unsigned line = 0; /* where it was read from (0: not read from a file) */
};

struct Trace {
	std::string path;
	std::string device; /* the node it was recorded from, where the file says (umockdev's @DEV) */
	std::vector<TraceOp> ops;
};

/* One line of the trace format, without the newline. */
std::string formatOp(const TraceOp &op);
/* Parses one operation line (not a comment or the header); false with what is wrong. */
bool parseOp(std::string_view line, TraceOp &op, std::string &error);
/* Reads a devemu trace; false with "PATH:LINE: what is wrong". */
bool readTrace(const std::string &path, Trace &trace, std::string &error);
/* Reads an umockdev script (r/w/f/Q lines, ^ escapes) into read and write operations on file 0. */
bool readUmockdevScript(const std::string &path, Trace &trace, std::string &error);
/* Parses a whole trace or script held in memory (name is what errors call it). */
bool parseTrace(std::string_view text, const std::string &name, Trace &trace, std::string &error);
bool parseUmockdevScript(std::string_view text, const std::string &name, Trace &trace, std::string &error);

/* Bytes as a trace writes them: a quoted string with C escapes when mostly text, else hex. */
std::string formatBytes(const std::vector<uint8_t> &bytes);
/* Result as a trace writes it: the number, or -ENAME for an error. */
std::string formatResult(int64_t result);

/*
 * Appends operations to a trace file as they happen, one write(2) per line, so
 * what was recorded survives the daemon. Measures each operation's delay.
 */
class TraceWriter
{
public:
	/* Creates (truncates) path and writes the header; 0 or -errno with a message. */
	int open(const std::string &path, std::string &error);
	bool isOpen() const { return fd_.isValid(); }
	const std::string &path() const { return path_; }
	/* Fills op.delay from the time of the previous append, and writes the line. */
	void append(TraceOp op);
	/* The same for an operation that happened at when (not before the previous append). */
	void append(TraceOp op, std::chrono::steady_clock::time_point when);
	size_t count() const { return count_; }

private:
	UniqueFD fd_;
	std::string path_;
	std::chrono::steady_clock::time_point last_{};
	bool started_ = false;
	bool failed_ = false;
	size_t count_ = 0;
};

} // namespace devemu::trace
