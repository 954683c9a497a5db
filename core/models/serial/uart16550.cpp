// SPDX-License-Identifier: MIT
// serial: the 16550A register file: reads and writes with the chip's side effects, FIFOs, interrupt priority.
#include "uart16550.h"

namespace devemu::serial {

void Uart16550::reset()
{
	rx_.clear();
	tx_.clear();
	tsr_.reset();
	ier_ = lcr_ = mcr_ = fcr_ = scr_ = 0;
	dll_ = dlm_ = 0;
	overrun_ = thriPending_ = timeoutPending_ = false;
	msrDelta_ = 0;
}

unsigned Uart16550::bitsPerChar() const
{
	return 1 + wordLength() + ((lcr_ & UART_LCR_PARITY) ? 1 : 0) + ((lcr_ & UART_LCR_STOP) ? 2 : 1);
}

unsigned Uart16550::rxTrigger() const
{
	switch (fcr_ & UART_FCR_TRIGGER_MASK) {
	case UART_FCR_TRIGGER_4:
		return 4;
	case UART_FCR_TRIGGER_8:
		return 8;
	case UART_FCR_TRIGGER_14:
		return 14;
	default:
		return 1;
	}
}

uint8_t Uart16550::msrLines() const
{
	if (!loop())
		return lines_;
	/* Loop mode: the outputs feed the inputs inside the chip. */
	uint8_t v = 0;
	if (mcr_ & UART_MCR_RTS)
		v |= UART_MSR_CTS;
	if (mcr_ & UART_MCR_DTR)
		v |= UART_MSR_DSR;
	if (mcr_ & UART_MCR_OUT1)
		v |= UART_MSR_RI;
	if (mcr_ & UART_MCR_OUT2)
		v |= UART_MSR_DCD;
	return v;
}

void Uart16550::track(uint8_t before)
{
	uint8_t after = msrLines();
	uint8_t changed = before ^ after;
	if (changed & UART_MSR_CTS)
		msrDelta_ |= UART_MSR_DCTS;
	if (changed & UART_MSR_DSR)
		msrDelta_ |= UART_MSR_DDSR;
	if (changed & UART_MSR_DCD)
		msrDelta_ |= UART_MSR_DDCD;
	if ((before & UART_MSR_RI) && !(after & UART_MSR_RI))
		msrDelta_ |= UART_MSR_TERI; /* trailing edge only */
}

uint8_t Uart16550::lsrValue() const
{
	uint8_t v = 0;
	if (!rx_.empty()) {
		v |= UART_LSR_DR;
		v |= rx_.front().errors; /* error bits belong to the character at the top of the FIFO */
	}
	if (overrun_)
		v |= UART_LSR_OE;
	if (tx_.empty())
		v |= UART_LSR_THRE;
	if (tx_.empty() && !tsr_)
		v |= UART_LSR_TEMT;
	if (fcr_ & UART_FCR_ENABLE_FIFO)
		for (const auto &r : rx_)
			if (r.errors) {
				v |= UART_LSR_FIFOE;
				break;
			}
	return v;
}

uint8_t Uart16550::iirValue() const
{
	uint8_t id = UART_IIR_NO_INT;
	if ((ier_ & UART_IER_RLSI) && (overrun_ || (!rx_.empty() && rx_.front().errors)))
		id = UART_IIR_RLSI;
	else if ((ier_ & UART_IER_RDI) && !rx_.empty() && rx_.size() >= rxTrigger())
		id = UART_IIR_RDI;
	else if ((ier_ & UART_IER_RDI) && !rx_.empty() && timeoutPending_)
		id = UART_IIR_RX_TIMEOUT;
	else if ((ier_ & UART_IER_THRI) && thriPending_)
		id = UART_IIR_THRI;
	else if ((ier_ & UART_IER_MSI) && msrDelta_)
		id = UART_IIR_MSI;
	return id | ((fcr_ & UART_FCR_ENABLE_FIFO) ? kIirFifosEnabled : 0);
}

uint8_t Uart16550::peek(unsigned reg) const
{
	bool dlab = lcr_ & UART_LCR_DLAB;
	switch (reg & 7) {
	case UART_RX:
		return dlab ? dll_ : (rx_.empty() ? 0 : rx_.front().c);
	case UART_IER:
		return dlab ? dlm_ : ier_;
	case UART_IIR:
		return iirValue();
	case UART_LCR:
		return lcr_;
	case UART_MCR:
		return mcr_;
	case UART_LSR:
		return lsrValue();
	case UART_MSR:
		return msrValue();
	default:
		return scr_;
	}
}

uint8_t Uart16550::read(unsigned reg)
{
	uint8_t v = peek(reg);
	switch (reg & 7) {
	case UART_RX:
		if (!(lcr_ & UART_LCR_DLAB) && !rx_.empty()) {
			rx_.pop_front();
			timeoutPending_ = false;
		}
		break;
	case UART_IIR:
		if ((v & kIirIdMask) == UART_IIR_THRI)
			thriPending_ = false;
		break;
	case UART_LSR:
		overrun_ = false;
		if (!rx_.empty())
			rx_.front().errors = 0;
		break;
	case UART_MSR:
		msrDelta_ = 0;
		break;
	}
	return v;
}

void Uart16550::write(unsigned reg, uint8_t value)
{
	bool dlab = lcr_ & UART_LCR_DLAB;
	switch (reg & 7) {
	case UART_TX:
		if (dlab) {
			dll_ = value;
			break;
		}
		thriPending_ = false;
		if (!tsr_ && tx_.empty()) {
			tsr_ = value; /* straight into the shift register: THR is empty again at once */
			thriPending_ = true;
		} else if (tx_.size() < ((fcr_ & UART_FCR_ENABLE_FIFO) ? kFifoSize : 1)) {
			tx_.push_back(value);
		} else {
			txDropped_++; /* writing a full FIFO loses the character, as on the chip */
		}
		break;
	case UART_IER:
		if (dlab) {
			dlm_ = value;
			break;
		}
		/* Enabling the THRE interrupt while THR is empty raises it (the 16550's behaviour). */
		if ((value & UART_IER_THRI) && !(ier_ & UART_IER_THRI) && tx_.empty())
			thriPending_ = true;
		ier_ = value & 0x0f;
		break;
	case UART_FCR:
		if ((value ^ fcr_) & UART_FCR_ENABLE_FIFO) {
			rx_.clear();
			tx_.clear();
			timeoutPending_ = false;
		}
		if (value & UART_FCR_CLEAR_RCVR) {
			rx_.clear();
			timeoutPending_ = false;
		}
		if (value & UART_FCR_CLEAR_XMIT)
			tx_.clear();
		fcr_ = value & (UART_FCR_ENABLE_FIFO | UART_FCR_DMA_SELECT | UART_FCR_TRIGGER_MASK);
		if (!(fcr_ & UART_FCR_ENABLE_FIFO))
			fcr_ = 0;
		break;
	case UART_LCR:
		lcr_ = value;
		break;
	case UART_MCR: {
		uint8_t before = msrLines();
		mcr_ = value & kMcrMask;
		track(before);
		break;
	}
	case UART_LSR:
	case UART_MSR:
		break; /* read-only (factory test writes are ignored) */
	default:
		scr_ = value;
		break;
	}
}

std::optional<uint8_t> Uart16550::shiftOut()
{
	if (!tsr_)
		return std::nullopt;
	uint8_t c = static_cast<uint8_t>(*tsr_ & ((1u << wordLength()) - 1));
	tsr_.reset();
	if (!tx_.empty()) {
		tsr_ = tx_.front();
		tx_.pop_front();
		if (tx_.empty())
			thriPending_ = true;
	}
	if (loop()) {
		pushRx(c, 0);
		return std::nullopt;
	}
	return c;
}

void Uart16550::pushRx(uint8_t c, uint8_t errors)
{
	timeoutPending_ = false;
	if (rx_.size() >= rxDepth()) {
		overrun_ = true;
		overruns_++;
		if (!(fcr_ & UART_FCR_ENABLE_FIFO))
			rx_.back() = { c, errors }; /* 16450 mode: the holding register is overwritten */
		return; /* FIFO mode: the character in the shift register is lost */
	}
	rx_.push_back({ static_cast<uint8_t>(c & ((1u << wordLength()) - 1)), errors });
}

void Uart16550::receive(uint8_t c, uint8_t errors)
{
	if (loop())
		return; /* the receiver listens to our own transmitter */
	pushRx(c, errors);
}

void Uart16550::rxIdle()
{
	if (!rx_.empty() && (fcr_ & UART_FCR_ENABLE_FIFO))
		timeoutPending_ = true;
}

void Uart16550::setModemInputs(uint8_t lines)
{
	uint8_t before = msrLines();
	lines_ = lines & kMsrLines;
	track(before);
}

} // namespace devemu::serial
