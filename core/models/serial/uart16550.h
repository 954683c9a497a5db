// SPDX-License-Identifier: MIT
// serial: the 16550A register file (Uart16550): FIFOs, divisor latch, modem lines, one interrupt line.
#pragma once

#include <linux/serial_reg.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

namespace devemu::serial {

/* Register offsets (UART_RX...), bits (UART_IER_RDI...): <linux/serial_reg.h>. What it has no name for: */
#ifdef UART_IIR_FIFO_ENABLED
constexpr uint8_t kIirFifosEnabled = UART_IIR_FIFO_ENABLED;
#else
constexpr uint8_t kIirFifosEnabled = 0xc0; /* IIR bits 7:6, both set on a 16550A with FIFOs enabled */
#endif
constexpr uint8_t kIirIdMask = UART_IIR_ID | UART_IIR_NO_INT; /* the interrupt source, or none */
constexpr uint8_t kMcrMask = UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT1 | UART_MCR_OUT2 | UART_MCR_LOOP;
constexpr uint8_t kMsrLines = UART_MSR_CTS | UART_MSR_DSR | UART_MSR_RI | UART_MSR_DCD;

/*
 * A National Semiconductor PC16550D-compatible UART: eight registers, 16-byte
 * receive and transmit FIFOs, the divisor latch and one interrupt line. The
 * line side is stepped by the caller, one character time per shiftOut() or
 * receive(); the chip itself has no notion of time.
 */
class Uart16550
{
public:
	static constexpr unsigned kFifoSize = 16;

	Uart16550() { reset(); }
	/* Master reset: the datasheet's reset values (IER=0, IIR=0x01, LCR=0, MCR=0,
	 * LSR=0x60). */
	void reset();

	/* A CPU read, with the chip's side effects (RBR pops, LSR and MSR clear their
	 * sticky bits, IIR acks THRE). */
	uint8_t read(unsigned reg);
	/* The same register without side effects (for diagnostics). */
	uint8_t peek(unsigned reg) const;
	void write(unsigned reg, uint8_t value);

	/* Transmitter: a character is in the shift register or waits in the FIFO. */
	bool transmitting() const { return tsr_.has_value(); }
	/*
	 * One character time passed: the character in the shift register is on
	 * the wire (returned, masked to the word length) and the next one is
	 * loaded. In loop mode it goes to our own receiver and nullopt is returned.
	 */
	std::optional<uint8_t> shiftOut();
	/* A character arrived from the line (errors: UART_LSR_PE/FE/BI). Ignored in loop
	 * mode. */
	void receive(uint8_t c, uint8_t errors = 0);
	/* Four character times passed without receiver activity: raises the character
	 * timeout. */
	void rxIdle();
	/* The far end's outputs as seen on our inputs (UART_MSR_CTS|DSR|RI|DCD). */
	void setModemInputs(uint8_t lines);

	bool irq() const { return (iirValue() & UART_IIR_NO_INT) == 0; }
	/* Divisor latch; 0 means 65536 on the real chip. */
	unsigned divisor() const { return dll_ | (dlm_ << 8); }
	unsigned wordLength() const { return 5 + (lcr_ & UART_LCR_WLEN8); }
	/* Start + data + parity + stop bits of one character. */
	unsigned bitsPerChar() const;
	bool loop() const { return mcr_ & UART_MCR_LOOP; }
	uint8_t mcrValue() const { return mcr_; }
	uint8_t lcrValue() const { return lcr_; }
	uint8_t ierValue() const { return ier_; }
	uint8_t fcrValue() const { return fcr_; }
	/* What the far end sees on our output pins (loop mode holds them inactive).
	 */
	uint8_t outputs() const
	{
		return loop() ? 0 : mcr_ & (UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT1 | UART_MCR_OUT2);
	}
	bool breakOn() const { return lcr_ & UART_LCR_SBC; }
	size_t rxCount() const { return rx_.size(); }
	size_t txCount() const { return tx_.size(); }
	uint64_t overruns() const { return overruns_; }
	uint64_t txDropped() const { return txDropped_; }

private:
	struct RxChar {
		uint8_t c;
		uint8_t errors;
	};
	uint8_t iirValue() const;
	uint8_t lsrValue() const;
	uint8_t msrValue() const { return msrLines() | msrDelta_; }
	uint8_t msrLines() const;
	unsigned rxDepth() const { return (fcr_ & UART_FCR_ENABLE_FIFO) ? kFifoSize : 1; }
	unsigned rxTrigger() const;
	void track(uint8_t before);
	void pushRx(uint8_t c, uint8_t errors);

	std::deque<RxChar> rx_;
	std::deque<uint8_t> tx_;
	std::optional<uint8_t> tsr_;
	uint8_t ier_ = 0;
	uint8_t lcr_ = 0;
	uint8_t mcr_ = 0;
	uint8_t fcr_ = 0;
	uint8_t scr_ = 0;
	uint8_t dll_ = 0;
	uint8_t dlm_ = 0;
	bool overrun_ = false; /* LSR.OE, cleared by reading LSR */
	bool thriPending_ = false; /* THRE interrupt: cleared by reading IIR (when it
				      is the source) or writing THR */
	bool timeoutPending_ = false;
	uint8_t lines_ = 0; /* far end's CTS/DSR/RI/DCD */
	uint8_t msrDelta_ = 0;
	uint64_t overruns_ = 0;
	uint64_t txDropped_ = 0;
};

} // namespace devemu::serial
