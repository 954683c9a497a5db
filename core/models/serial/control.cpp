// SPDX-License-Identifier: MIT
// serial: the control side (devemuctl inject): bytes, a break and modem lines from the far end; the port's info.
#include "serial_port.h"

#include "devemu/inject_text.h"

#include <fmt/core.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace devemu::serial {

std::string SerialModel::info() const
{
	uint8_t m = uart_.peek(UART_MSR);
	uint8_t out = uart_.outputs();
	unsigned div = uart_.divisor() ? uart_.divisor() : 0x10000;
	uint8_t l = uart_.lcrValue();
	const char *parity = !(l & UART_LCR_PARITY) ? "none"
			     : (l & UART_LCR_SPAR)  ? ((l & UART_LCR_EPAR) ? "space" : "mark")
			     : (l & UART_LCR_EPAR)  ? "even"
						    : "odd";
	std::string far = far_ ? far_->describe() : "loopback";
	return fmt::format(
		"far={} peer={} dtr={} rts={} out1={} out2={} loop={} cts={} dsr={} dcd={} ri={} baud={} divisor={} "
		"data={} parity={} stop={} break={} ier={:#04x} iir={:#04x} fcr={:#04x} lcr={:#04x} mcr={:#04x} "
		"lsr={:#04x} msr={:#04x} inq={} outq={} opens={} rx={} tx={} sent={} overrun={} buf_overrun={} lost={} "
		"tx_dropped={}",
		far, far_ ? (far_->peerConnected() ? "connected" : "none") : "loopback", (out & UART_MCR_DTR) ? 1 : 0,
		(out & UART_MCR_RTS) ? 1 : 0, (out & UART_MCR_OUT1) ? 1 : 0, (out & UART_MCR_OUT2) ? 1 : 0,
		uart_.loop() ? 1 : 0, (m & UART_MSR_CTS) ? 1 : 0, (m & UART_MSR_DSR) ? 1 : 0,
		(m & UART_MSR_DCD) ? 1 : 0, (m & UART_MSR_RI) ? 1 : 0, config_.clock / (16 * div), div,
		uart_.wordLength(), parity, (l & UART_LCR_STOP) ? 2 : 1, uart_.breakOn() ? 1 : 0, uart_.ierValue(),
		uart_.peek(UART_IIR), uart_.fcrValue(), l, uart_.mcrValue(), uart_.peek(UART_LSR), m, inq(),
		xmit_.size(), opens_, icount_.rx, icount_.tx, farSent_, icount_.overrun, icount_.buf_overrun,
		far_ ? far_->lost() : 0, uart_.txDropped());
}

int SerialModel::inject(const std::vector<std::string> &args, std::string &reply)
{
	return runInjectVerb(*this, kVerbs, args, reply);
}

int SerialModel::injectInfo(const std::vector<std::string> &, std::string &reply)
{
	reply = info();
	return 0;
}

/* The far end's modem outputs (our CTS, DSR, DCD, RI) change: delta bits, an MSR interrupt. */
void SerialModel::setFarLines(uint8_t mask, uint8_t value)
{
	farLines_ = static_cast<uint8_t>((farLines_ & ~mask) | (value & mask));
	uart_.setModemInputs(farLines_);
	service();
	notify(POLLPRI);
}

int SerialModel::injectBreak(const std::vector<std::string> &, std::string &reply)
{
	wire_.emplace_back(0, true);
	armLine();
	reply = "break queued on the line";
	return 0;
}

/* data TEXT, hex BYTES */
int SerialModel::injectBytes(const std::vector<std::string> &args, std::string &reply)
{
	std::vector<uint8_t> bytes;
	if (!parseInjectBytes(args, bytes, reply))
		return -EINVAL;
	for (uint8_t b : bytes)
		wire_.emplace_back(b, false);
	armLine();
	reply = fmt::format("{} bytes on the line to the receiver", bytes.size());
	return 0;
}

int SerialModel::injectModem(const std::vector<std::string> &args, std::string &reply)
{
	uint8_t lines = farLines_;
	if (args.size() < 2) {
		reply = "modem needs at least one of cts=, dsr=, dcd=, ri=";
		return -EINVAL;
	}
	for (size_t i = 1; i < args.size(); i++) {
		const std::string &a = args[i];
		auto eq = a.find('=');
		std::string key = a.substr(0, eq);
		std::string val = eq == std::string::npos ? "" : a.substr(eq + 1);
		uint8_t bit = key == "cts"		      ? UART_MSR_CTS
			      : key == "dsr"		      ? UART_MSR_DSR
			      : (key == "dcd" || key == "cd") ? UART_MSR_DCD
			      : key == "ri"		      ? UART_MSR_RI
							      : 0;
		if (!bit || (val != "0" && val != "1")) {
			reply = fmt::format("'{}': expected cts=, dsr=, dcd= or ri= with 0 or 1", a);
			return -EINVAL;
		}
		lines = val == "1" ? (lines | bit) : (lines & static_cast<uint8_t>(~bit));
	}
	setFarLines(0xff, lines);
	reply = fmt::format("cts={} dsr={} dcd={} ri={}", (lines & UART_MSR_CTS) ? 1 : 0,
			    (lines & UART_MSR_DSR) ? 1 : 0, (lines & UART_MSR_DCD) ? 1 : 0,
			    (lines & UART_MSR_RI) ? 1 : 0);
	return 0;
}

const InjectVerb<SerialModel> SerialModel::kVerbs[5] = {
	{ "data", "TEXT", "bytes from the far end (escapes \\n \\r \\t \\\\ \\xNN)", &SerialModel::injectBytes },
	{ "hex", "BYTES", "bytes from the far end, in hex (\"68 69 0a\")", &SerialModel::injectBytes },
	{ "break", "", "a break condition from the far end", &SerialModel::injectBreak },
	{ "modem", "[cts=0|1] [dsr=0|1] [dcd=0|1] [ri=0|1]", "the far end's modem outputs (any subset)",
	  &SerialModel::injectModem },
	{ "info", "", "line settings, modem lines both ways, registers, counters, far end", &SerialModel::injectInfo },
};

} // namespace devemu::serial
