// SPDX-License-Identifier: MIT
// serial: the 8250-style port driver: startup, shutdown, set_termios, the interrupt handler, rx/tx, modem status, break.
#include "serial_port.h"
#include "tty_baudrate.h"

#include <fmt/core.h>

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace devemu::serial {

void SerialModel::setMctrl(unsigned mctrl)
{
	mctrl_ = mctrl;
	uint8_t v = 0;
	if (mctrl & TIOCM_DTR)
		v |= UART_MCR_DTR;
	if (mctrl & TIOCM_RTS)
		v |= UART_MCR_RTS;
	if (mctrl & TIOCM_OUT1)
		v |= UART_MCR_OUT1;
	if (mctrl & TIOCM_OUT2)
		v |= UART_MCR_OUT2;
	if (mctrl & TIOCM_LOOP)
		v |= UART_MCR_LOOP;
	uart_.write(UART_MCR, v);
	service();
	reportLine();
}

/* What the far end sees of our side of the line: rate, framing, DTR/RTS (nothing while in loopback). */
void SerialModel::reportLine()
{
	if (!far_ || uart_.loop())
		return;
	uint8_t l = uart_.lcrValue();
	unsigned div = uart_.divisor() ? uart_.divisor() : 0x10000;
	char parity = !(l & UART_LCR_PARITY) ? 'N'
		      : (l & UART_LCR_SPAR)  ? ((l & UART_LCR_EPAR) ? 'S' : 'M')
		      : (l & UART_LCR_EPAR)  ? 'E'
					     : 'O';
	far_->lineSettings(config_.clock / (16 * div), uart_.wordLength(), parity, (l & UART_LCR_STOP) ? 2 : 1);
	uint8_t out = uart_.outputs();
	far_->modemOutputs(out & UART_MCR_DTR, out & UART_MCR_RTS);
}

/* serial8250_do_startup + uart_port_startup */
void SerialModel::startup()
{
	uart_.write(UART_FCR, UART_FCR_ENABLE_FIFO);
	uart_.write(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
	uart_.write(UART_FCR, 0);
	uart_.read(UART_LSR);
	uart_.read(UART_RX);
	uart_.read(UART_IIR);
	uart_.read(UART_MSR);
	lcr_ = 3; /* 8N1 until set_termios */
	uart_.write(UART_LCR, lcr_);
	ier_ = UART_IER_RLSI | UART_IER_RDI;
	uart_.write(UART_IER, ier_);
	/* A fresh line discipline: nothing buffered, no half-typed line. */
	in_.clear();
	delims_.clear();
	committed_ = 0;
	lnext_ = false;
	column_ = canonColumn_ = 0;
	xmit_.clear();
	xchar_.reset();
	flowStopped_ = tcoStopped_ = throttled_ = false;
	unsigned mctrl = (mctrl_ & ~(TIOCM_DTR | TIOCM_RTS)) | TIOCM_OUT2;
	if ((termios_.c_cflag & CBAUD) != B0)
		mctrl |= TIOCM_DTR | TIOCM_RTS;
	programUart(nullptr);
	setMctrl(mctrl);
}

/* uart_shutdown after tty_port_close: what was written still drains (closing_wait); then the chip is quiet. */
void SerialModel::shutdown()
{
	flushInput();
	exclusive_ = false;
	for (auto *f : files_)
		f->hungUp = false;
	unsigned mctrl = mctrl_ & ~TIOCM_OUT2; /* serial8250_do_shutdown: OUT2 gated the IRQ line */
	if (termios_.c_cflag & HUPCL)
		mctrl &= ~(TIOCM_DTR | TIOCM_RTS);
	if (breakOn_)
		setBreak(false);
	if (xmit_.empty()) {
		ier_ = 0;
		uart_.write(UART_IER, 0);
	}
	setMctrl(mctrl);
}

/* uart_get_baud_rate with serial8250_get_baud_rate's limits */
unsigned SerialModel::chooseBaud(termios2 &t, const termios2 *old) const
{
	unsigned max = (config_.clock + config_.clock / 100) / 16;
	unsigned min = config_.clock / 16 / 0xffff;
	for (int attempt = 0; attempt < 2; attempt++) {
		unsigned baud = outputBaud(t);
		bool hungUp = false;
		if (baud == 0) {
			hungUp = true;
			baud = 9600;
		}
		if (baud >= min && baud <= max)
			return baud;
		t.c_cflag &= ~CBAUD;
		if (old) {
			baud = outputBaud(*old);
			if (!hungUp)
				encodeBaud(t, baud, baud);
			old = nullptr;
			continue;
		}
		if (!hungUp) {
			if (baud <= min)
				encodeBaud(t, min + 1, min + 1);
			else
				encodeBaud(t, max, max);
		}
	}
	return 9600;
}

/* serial8250_do_set_termios: LCR, divisor latch, FCR, IER.MSI and the read/ignore masks from termios. */
void SerialModel::programUart(const termios2 *old)
{
	termios2 &t = termios_;
	uint8_t cval = static_cast<uint8_t>(((t.c_cflag & CSIZE) >> 4) & 3); /* CS5..CS8 -> WLEN5..8 */
	if (t.c_cflag & CSTOPB)
		cval |= UART_LCR_STOP;
	if (t.c_cflag & PARENB)
		cval |= UART_LCR_PARITY;
	if (!(t.c_cflag & PARODD))
		cval |= UART_LCR_EPAR;
	if (t.c_cflag & CMSPAR)
		cval |= UART_LCR_SPAR;
	unsigned baud = chooseBaud(t, old);
	unsigned quot = std::clamp<unsigned>((config_.clock + 8 * baud) / (16 * baud), 1, 0xffff);
	fcr_ = UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_8; /* UART_FCR_R_TRIG_10 for a 16550A */
	if (baud < 2400)
		fcr_ = UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_1;
	ier_ &= static_cast<uint8_t>(~UART_IER_MSI);
	if ((t.c_cflag & CRTSCTS) || !(t.c_cflag & CLOCAL))
		ier_ |= UART_IER_MSI;
	uart_.write(UART_IER, ier_);
	if (breakOn_)
		cval |= UART_LCR_SBC;
	uart_.write(UART_LCR, cval | UART_LCR_DLAB);
	uart_.write(UART_DLL, static_cast<uint8_t>(quot & 0xff));
	uart_.write(UART_DLM, static_cast<uint8_t>(quot >> 8));
	uart_.write(UART_LCR, cval);
	lcr_ = cval;
	uart_.write(UART_FCR, UART_FCR_ENABLE_FIFO);
	uart_.write(UART_FCR, fcr_);
	/* The model reports the rate its divisor really produces (Bnnn when within 2% of one). */
	if (outputBaud(t) != 0) {
		unsigned real = config_.clock / (16 * quot);
		encodeBaud(t, real, real);
	}
	hwStopped_ = (t.c_cflag & CRTSCTS) && !(uart_.peek(UART_MSR) & UART_MSR_CTS);
	service();
	startTx();
	reportLine();
}

void SerialModel::startTx()
{
	if (!(ier_ & UART_IER_THRI) && opens_ > 0) {
		ier_ |= UART_IER_THRI;
		uart_.write(UART_IER, ier_);
	}
	service();
	armLine();
}

void SerialModel::stopTx()
{
	if (ier_ & UART_IER_THRI) {
		ier_ &= static_cast<uint8_t>(~UART_IER_THRI);
		uart_.write(UART_IER, ier_);
	}
}

/* serial8250_handle_irq, run whenever the interrupt line is raised. */
void SerialModel::service()
{
	for (int guard = 0; guard < 64 && uart_.irq(); guard++) {
		uint8_t iirv = uart_.read(UART_IIR);
		if (iirv & UART_IIR_NO_INT)
			break;
		uint8_t lsrv = uart_.read(UART_LSR);
		if (lsrv & (UART_LSR_DR | UART_LSR_BI))
			lsrv = rxChars(lsrv);
		modemStatus();
		/*
		 * THRE as of now, not as rxChars found it: n_tty's input processing runs inside rxChars
		 * here (in the kernel later, from the flip buffer's work) and may have started
		 * transmission meanwhile (a START received, an echo), and a character written to a
		 * full FIFO is lost.
		 */
		if ((uart_.peek(UART_LSR) & UART_LSR_THRE) && (ier_ & UART_IER_THRI))
			txChars();
	}
}

/* serial8250_rx_chars / serial8250_read_char */
uint8_t SerialModel::rxChars(uint8_t lsrv)
{
	int budget = 256;
	tcflag_t iflag = termios_.c_iflag;
	uint8_t readMask = UART_LSR_OE | UART_LSR_THRE | UART_LSR_DR;
	if (iflag & INPCK)
		readMask |= UART_LSR_FE | UART_LSR_PE;
	if (iflag & (IGNBRK | BRKINT | PARMRK))
		readMask |= UART_LSR_BI;
	uint8_t ignoreMask = 0;
	if (iflag & IGNPAR)
		ignoreMask |= UART_LSR_PE | UART_LSR_FE;
	if (iflag & IGNBRK) {
		ignoreMask |= UART_LSR_BI;
		if (iflag & IGNPAR)
			ignoreMask |= UART_LSR_OE;
	}
	if (!(termios_.c_cflag & CREAD))
		ignoreMask |= UART_LSR_DR;
	do {
		uint8_t ch = (lsrv & UART_LSR_DR) ? uart_.read(UART_RX) : 0;
		char flag = 'n';
		icount_.rx++;
		if (lsrv & (UART_LSR_BI | UART_LSR_PE | UART_LSR_FE | UART_LSR_OE)) {
			if (lsrv & UART_LSR_BI) {
				lsrv &= static_cast<uint8_t>(~(UART_LSR_FE | UART_LSR_PE));
				icount_.brk++;
			} else if (lsrv & UART_LSR_PE) {
				icount_.parity++;
			} else if (lsrv & UART_LSR_FE) {
				icount_.frame++;
			}
			if (lsrv & UART_LSR_OE)
				icount_.overrun++;
			lsrv &= readMask;
			if (lsrv & UART_LSR_BI)
				flag = 'b';
			else if (lsrv & UART_LSR_PE)
				flag = 'p';
			else if (lsrv & UART_LSR_FE)
				flag = 'f';
		}
		/* uart_insert_char */
		if ((lsrv & ignoreMask & ~UART_LSR_OE) == 0 && opens_ > 0)
			flip_.emplace_back(ch, flag);
		if ((lsrv & ~ignoreMask & UART_LSR_OE) && opens_ > 0)
			flip_.emplace_back(0, 'o');
		lsrv = uart_.read(UART_LSR);
	} while ((lsrv & (UART_LSR_DR | UART_LSR_BI)) && --budget > 0);
	lastRx_ = Clock::now();
	pushFlip();
	notify(POLLIN);
	return lsrv;
}

/*
 * tty_flip_buffer_push: the line discipline takes the received characters
 * after the interrupt handler, in order. An echo starts the transmitter, which
 * may run the handler again; what that one receives queues behind.
 */
void SerialModel::pushFlip()
{
	if (flipping_)
		return;
	flipping_ = true;
	while (!flip_.empty()) {
		auto [c, flag] = flip_.front();
		flip_.pop_front();
		receiveChar(c, flag);
	}
	flipping_ = false;
}

/* serial8250_modem_status */
uint8_t SerialModel::modemStatus()
{
	uint8_t status = uart_.read(UART_MSR);
	if ((status & UART_MSR_ANY_DELTA) && (ier_ & UART_IER_MSI)) {
		if (status & UART_MSR_TERI)
			icount_.rng++;
		if (status & UART_MSR_DDSR)
			icount_.dsr++;
		if (status & UART_MSR_DDCD) {
			icount_.dcd++;
			if (!(status & UART_MSR_DCD) && !(termios_.c_cflag & CLOCAL))
				hangup();
		}
		if (status & UART_MSR_DCTS) {
			icount_.cts++;
			if (termios_.c_cflag & CRTSCTS) {
				bool stop = !(status & UART_MSR_CTS);
				if (hwStopped_ && !stop) {
					hwStopped_ = false;
					startTx();
				} else if (!hwStopped_ && stop) {
					hwStopped_ = true;
					stopTx();
				}
			}
		}
		notify(POLLPRI);
	}
	return status;
}

/* serial8250_tx_chars */
void SerialModel::txChars()
{
	if (xchar_) {
		uart_.write(UART_TX, *xchar_);
		icount_.tx++;
		xchar_.reset();
		armLine();
		return;
	}
	if (txStopped() || xmit_.empty()) {
		stopTx();
		return;
	}
	for (unsigned count = Uart16550::kFifoSize; count > 0 && !xmit_.empty(); count--) {
		uart_.write(UART_TX, xmit_.front());
		xmit_.pop_front();
		icount_.tx++;
	}
	if (xmit_.size() < kWakeupChars)
		notify(POLLOUT);
	if (xmit_.empty())
		stopTx();
	armLine();
}

void SerialModel::setBreak(bool on)
{
	if (on == breakOn_)
		return;
	breakOn_ = on;
	lcr_ = on ? (lcr_ | UART_LCR_SBC) : (lcr_ & static_cast<uint8_t>(~UART_LCR_SBC));
	uart_.write(UART_LCR, lcr_);
	if (far_ && !uart_.loop())
		far_->breakState(on);
	/* The far end sees the break when the line returns to mark; a loopback plug brings it back to us. */
	if (!on && config_.far.kind == FarKind::Loopback && !uart_.loop()) {
		wire_.emplace_back(0, true);
		armLine();
	}
}

} // namespace devemu::serial
