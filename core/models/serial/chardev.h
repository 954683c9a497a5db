// SPDX-License-Identifier: MIT
// serial: the line backends at the far end of the UART (QEMU's chardev role): loopback plug, pty, tcp or unix socket, Python.
#pragma once

#include "devemu/asio.h"

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace devemu::serial {

/* What is at the far end of the line (far=). A loopback plug has no backend: the model loops the wire. */
enum class FarKind { Loopback, Pty, Tcp, Unix, Python };

struct FarSpec {
	FarKind kind = FarKind::Loopback;
	std::string text = "loopback"; /* as given */
	asio::ip::address address; /* tcp */
	uint16_t port = 0; /* tcp */
	std::string path; /* unix; python: the script */
	std::string cls; /* python: the class at the far end */
};

/* far=loopback|pty|tcp:PORT|tcp:HOST:PORT|unix:PATH|python:FILE[:CLASS]; false with what was expected. Acquires nothing. */
bool parseFarSpec(const std::string &text, FarSpec &spec, std::string &error);

/*
 * A far end on the device's strand: a byte stream (pty or socket), or an
 * object that also sees the line's settings, modem lines and breaks (Python).
 */
class FarEnd : public std::enable_shared_from_this<FarEnd>
{
public:
	std::function<void(const uint8_t *, size_t)> onData; /* bytes the far end sent us */
	std::function<void(bool)> onPeer; /* a peer connected (true) or went away (false) */
	/* The far end drives its modem outputs (our inputs): UART_MSR_CTS/DSR/DCD/RI bits in mask set to value. */
	std::function<void(uint8_t mask, uint8_t value)> onModemLines;
	std::function<void()> onBreak; /* the far end sends a break */

	/* The line as our UART drives it; a byte stream ignores these. */
	virtual void lineSettings(unsigned baud, unsigned dataBits, char parity, unsigned stopBits)
	{
		(void)baud, (void)dataBits, (void)parity, (void)stopBits;
	}
	virtual void modemOutputs(bool dtr, bool rts) { (void)dtr, (void)rts; }
	virtual void breakState(bool on) { (void)on; }

	virtual ~FarEnd() = default;
	virtual void start() = 0;
	virtual void stop() = 0;
	virtual std::string describe() const = 0;
	virtual bool peerConnected() const = 0;
	/* Bytes on their way to the far end; lost (and counted) when nobody listens. */
	virtual void send(const std::vector<uint8_t> &bytes) = 0;
	/* Backpressure: the line has enough in flight from the far end. */
	virtual void setReading(bool want) = 0;
	uint64_t lost() const { return lost_; }

protected:
	uint64_t lost_ = 0;
};

/*
 * Opens a pty or listens on a socket, as spec says (nullptr for a loopback
 * plug, or with error set when it fails). device names it in the log.
 */
std::shared_ptr<FarEnd> openFarEnd(const Strand &strand, const FarSpec &spec, const std::string &device,
				   std::string &error);

} // namespace devemu::serial
