// SPDX-License-Identifier: MIT
// serial: the wire between the UART and its far end: one character time per step, paced at the set rate.
#include "serial_port.h"

#include <fmt/core.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace devemu::serial {

double SerialModel::charSeconds() const
{
	unsigned div = uart_.divisor() ? uart_.divisor() : 0x10000;
	return uart_.bitsPerChar() * 16.0 * div / config_.clock;
}

void SerialModel::armLine()
{
	if (lineTimer_.pending())
		return;
	if (!uart_.transmitting() && wire_.empty() && (uart_.rxCount() == 0 || rxIdleChars_ >= 4))
		return;
	lineLast_ = Clock::now();
	credit_ = 0;
	auto delay = config_.paced ? std::chrono::duration<double>(std::max(charSeconds(), 0.001))
				   : std::chrono::duration<double>(0);
	lineTimer_.after(std::chrono::duration_cast<Clock::duration>(delay), [this] { tick(); });
}

void SerialModel::tick()
{
	auto now = Clock::now();
	size_t steps;
	if (config_.paced) {
		credit_ += std::chrono::duration<double>(now - lineLast_).count() / charSeconds();
		steps = static_cast<size_t>(credit_);
		credit_ -= static_cast<double>(steps);
		steps = std::min<size_t>(std::max<size_t>(steps, 1), 65536);
	} else {
		steps = 65536;
	}
	std::vector<uint8_t> toFar;
	size_t wireBefore = wire_.size();
	for (size_t i = 0; i < steps; i++) {
		bool busy = false;
		if (uart_.transmitting()) {
			busy = true;
			if (uart_.loop())
				rxIdleChars_ = 0; /* the character goes to our own receiver */
			if (auto c = uart_.shiftOut()) {
				farSent_++;
				if (config_.far.kind == FarKind::Loopback)
					wire_.emplace_back(*c, false);
				else
					toFar.push_back(*c);
			}
		}
		if (!wire_.empty()) {
			busy = true;
			auto [c, brk] = wire_.front();
			wire_.pop_front();
			rxIdleChars_ = 0;
			if (brk)
				uart_.receive(0, UART_LSR_BI);
			else
				uart_.receive(c);
		} else if (uart_.rxCount() > 0 && rxIdleChars_ < 4) {
			busy = true;
			if (++rxIdleChars_ >= 4)
				uart_.rxIdle(); /* four character times of silence: the character timeout */
		}
		service();
		if (!busy)
			break;
	}
	if (!toFar.empty() && far_)
		far_->send(toFar);
	if (far_ && wireBefore >= kWireQueue && wire_.size() < kWireQueue)
		far_->setReading(true);
	if (drained())
		notify(POLLOUT);
	else
		notify();
	/* After the last close the chip goes quiet once what was written has left. */
	if (opens_ == 0 && xmit_.empty() && ier_) {
		ier_ = 0;
		uart_.write(UART_IER, 0);
	}
	armLine();
}

void SerialModel::fromFarEnd(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		wire_.emplace_back(p[i], false);
	if (far_ && wire_.size() >= kWireQueue)
		far_->setReading(false);
	armLine();
}

} // namespace devemu::serial
