// SPDX-License-Identifier: MIT
// serial: the 16550A register file (Uart16550) that the serial tty model drives, and its register bits.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

namespace devemu::serial {

/* Register offsets; RBR/THR and IER read the divisor latch (DLL/DLM) while
 * LCR.DLAB is set. */
enum Reg : unsigned {
	RBR = 0,
	THR = 0,
	DLL = 0,
	IER = 1,
	DLM = 1,
	IIR = 2,
	FCR = 2,
	LCR = 3,
	MCR = 4,
	LSR = 5,
	MSR = 6,
	SCR = 7
};

namespace ier {
constexpr uint8_t RDI = 0x01; /* received data available (and character timeout) */
constexpr uint8_t THRI = 0x02; /* transmitter holding register empty */
constexpr uint8_t RLSI = 0x04; /* receiver line status */
constexpr uint8_t MSI = 0x08; /* modem status */
} // namespace ier
namespace iir {
constexpr uint8_t NO_INT = 0x01;
constexpr uint8_t MSI = 0x00;
constexpr uint8_t THRI = 0x02;
constexpr uint8_t RDI = 0x04;
constexpr uint8_t RLSI = 0x06;
constexpr uint8_t TIMEOUT = 0x0c;
constexpr uint8_t ID_MASK = 0x0f;
constexpr uint8_t FIFOS = 0xc0; /* both set on a 16550A with FCR.ENABLE */
} // namespace iir
namespace fcr {
constexpr uint8_t ENABLE = 0x01;
constexpr uint8_t CLEAR_RCVR = 0x02;
constexpr uint8_t CLEAR_XMIT = 0x04;
constexpr uint8_t DMA_SELECT = 0x08;
constexpr uint8_t TRIGGER_1 = 0x00;
constexpr uint8_t TRIGGER_4 = 0x40;
constexpr uint8_t TRIGGER_8 = 0x80;
constexpr uint8_t TRIGGER_14 = 0xc0;
} // namespace fcr
namespace lcr {
constexpr uint8_t WLEN_MASK = 0x03; /* 0: 5 bits ... 3: 8 bits */
constexpr uint8_t STOP = 0x04; /* 2 stop bits (1.5 with 5-bit words) */
constexpr uint8_t PARITY = 0x08;
constexpr uint8_t EPAR = 0x10;
constexpr uint8_t SPAR = 0x20; /* stick parity */
constexpr uint8_t SBC = 0x40; /* set break */
constexpr uint8_t DLAB = 0x80;
} // namespace lcr
namespace mcr {
constexpr uint8_t DTR = 0x01;
constexpr uint8_t RTS = 0x02;
constexpr uint8_t OUT1 = 0x04;
constexpr uint8_t OUT2 = 0x08;
constexpr uint8_t LOOP = 0x10;
constexpr uint8_t MASK = 0x1f;
} // namespace mcr
namespace lsr {
constexpr uint8_t DR = 0x01;
constexpr uint8_t OE = 0x02;
constexpr uint8_t PE = 0x04;
constexpr uint8_t FE = 0x08;
constexpr uint8_t BI = 0x10;
constexpr uint8_t THRE = 0x20;
constexpr uint8_t TEMT = 0x40;
constexpr uint8_t FIFOE = 0x80;
constexpr uint8_t ERRORS = PE | FE | BI;
} // namespace lsr
namespace msr {
constexpr uint8_t DCTS = 0x01;
constexpr uint8_t DDSR = 0x02;
constexpr uint8_t TERI = 0x04;
constexpr uint8_t DDCD = 0x08;
constexpr uint8_t DELTAS = 0x0f;
constexpr uint8_t CTS = 0x10;
constexpr uint8_t DSR = 0x20;
constexpr uint8_t RI = 0x40;
constexpr uint8_t DCD = 0x80;
constexpr uint8_t LINES = 0xf0;
} // namespace msr

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
	/* A character arrived from the line (errors: lsr::PE/FE/BI). Ignored in loop
	 * mode. */
	void receive(uint8_t c, uint8_t errors = 0);
	/* Four character times passed without receiver activity: raises the character
	 * timeout. */
	void rxIdle();
	/* The far end's outputs as seen on our inputs (msr::CTS|DSR|RI|DCD). */
	void setModemInputs(uint8_t lines);

	bool irq() const { return (iirValue() & iir::NO_INT) == 0; }
	/* Divisor latch; 0 means 65536 on the real chip. */
	unsigned divisor() const { return dll_ | (dlm_ << 8); }
	unsigned wordLength() const { return 5 + (lcr_ & lcr::WLEN_MASK); }
	/* Start + data + parity + stop bits of one character. */
	unsigned bitsPerChar() const;
	bool loop() const { return mcr_ & mcr::LOOP; }
	uint8_t mcrValue() const { return mcr_; }
	uint8_t lcrValue() const { return lcr_; }
	uint8_t ierValue() const { return ier_; }
	uint8_t fcrValue() const { return fcr_; }
	/* What the far end sees on our output pins (loop mode holds them inactive).
	 */
	uint8_t outputs() const { return loop() ? 0 : mcr_ & (mcr::DTR | mcr::RTS | mcr::OUT1 | mcr::OUT2); }
	bool breakOn() const { return lcr_ & lcr::SBC; }
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
	unsigned rxDepth() const { return (fcr_ & fcr::ENABLE) ? kFifoSize : 1; }
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
