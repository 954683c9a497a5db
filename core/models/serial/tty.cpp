// SPDX-License-Identifier: MIT
// serial: the tty surface: the port's resources, termios (TCGETS/TCSETS*, termios2) and the tty ioctls; registration.
#include "serial_port.h"
#include "tty_baudrate.h"

#include "devemu/log.h"
#include "devemu/model_registry.h"

#include <fmt/core.h>

#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace devemu::serial {

namespace {

/* tty_std_termios as the serial core sets it up for its ports (uart_register_driver). */
termios2 defaultTermios()
{
	termios2 t{};
	t.c_iflag = ICRNL | IXON;
	t.c_oflag = OPOST | ONLCR;
	t.c_cflag = B9600 | CS8 | CREAD | HUPCL | CLOCAL;
	t.c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN;
	/* INIT_C_CC: intr ^C, quit ^\, erase ^?, kill ^U, eof ^D, time 0, min 1, swtc 0, start ^Q, stop ^S,
	 * susp ^Z, eol 0, reprint ^R, discard ^O, werase ^W, lnext ^V, eol2 0 */
	static const uint8_t cc[NCCS] = { 3, 034, 0177, 025, 4, 0, 1, 0, 021, 023, 032, 0, 022, 017, 027, 026, 0 };
	std::memcpy(t.c_cc, cc, NCCS);
	t.c_ispeed = t.c_ospeed = 9600;
	return t;
}

} // namespace

termios2 SerialModel::initialTermios()
{
	return defaultTermios();
}

/* The far end: a pty to open, a socket to listen on, or a Python object. */
int SerialModel::start(std::string &error)
{
	updateDivert(); /* canonical at power-on: reads by request until a program sets raw mode */
	far_ = openFarEnd(ctx_.strand(), config_.far, ctx_.name(), error);
	if (!error.empty())
		return -EIO;
	if (!far_)
		return 0; /* a loopback plug */
	far_->onData = [this](const uint8_t *p, size_t n) { fromFarEnd(p, n); };
	far_->onPeer = [this](bool up) {
		DEVEMU_LOG(Info, ctx_.name(), "far end {}: peer {}", far_->describe(), up ? "connected" : "gone");
	};
	far_->onModemLines = [this](uint8_t mask, uint8_t value) { setFarLines(mask, value); };
	far_->onBreak = [this] {
		wire_.emplace_back(0, true);
		armLine();
	};
	far_->start();
	reportLine();
	return 0;
}

/* tty_set_termios: the driver (uart_set_termios) and the line discipline (n_tty_set_termios) follow. */
void SerialModel::applyTermios(const termios2 &requested)
{
	termios2 old = termios_;
	termios_ = requested;
	termios_.c_cflag ^= (termios_.c_cflag ^ old.c_cflag) & ADDRB; /* changed only through rs485 config */
	programUart(&old);
	tcflag_t was = old.c_cflag & CBAUD, now = termios_.c_cflag & CBAUD;
	if (was != B0 && now == B0) {
		setMctrl(mctrl_ & ~(TIOCM_RTS | TIOCM_DTR));
	} else if (was == B0 && now != B0) {
		unsigned mask = TIOCM_DTR;
		if (!(termios_.c_cflag & CRTSCTS) || !throttled_)
			mask |= TIOCM_RTS;
		setMctrl(mctrl_ | mask);
	}
	if (!(termios_.c_cflag & CRTSCTS) && hwStopped_) {
		hwStopped_ = false;
		startTx();
	}
	if (!(termios_.c_iflag & IXON) && (old.c_iflag & IXON) && flowStopped_ && !tcoStopped_) {
		flowStopped_ = false;
		startTx();
	}
	if ((old.c_lflag ^ termios_.c_lflag) & ICANON) {
		delims_.clear();
		lnext_ = false;
		if (!canonical()) {
			committed_ = in_.size();
		} else if (in_.empty()) {
			committed_ = 0;
		} else {
			/* What was typed in raw mode becomes one completed line. */
			committed_ = in_.size();
			delims_.emplace_back(in_.size() - 1, false);
		}
	}
	updateDivert();
	notify(POLLIN | POLLOUT);
}

IoctlResult SerialModel::setTermios(OpenFile &, IoctlCall &call, bool kernel2, bool wait, bool flush)
{
	termios2 req = termios_;
	if (kernel2) {
		auto t = call.argIn<termios2>();
		if (!t)
			return call.done();
		req = *t;
	} else {
		auto t = call.argIn<termios>();
		if (!t)
			return call.done();
		req.c_iflag = t->c_iflag;
		req.c_oflag = t->c_oflag;
		req.c_cflag = t->c_cflag;
		req.c_lflag = t->c_lflag;
		req.c_line = t->c_line;
		std::memcpy(req.c_cc, t->c_cc, NCCS);
	}
	req.c_ispeed = inputBaud(req);
	req.c_ospeed = outputBaud(req);
	/* TCSETSW/TCSETSF: wait until everything written has left the transmitter. */
	if ((wait || flush) && !drained())
		return IoctlResult::wouldBlock();
	if (flush)
		flushInput();
	applyTermios(req);
	return call.done(0);
}

IoctlResult SerialModel::ioctl(OpenFile &f, IoctlCall &call)
{
	IoctlResult result = ioctlImpl(f, call);
	if (result.kind == IoctlResult::Kind::Done && result.ret >= 0)
		notify(); /* settings, lines or buffers may have changed: republish readiness */
	return result;
}

IoctlResult SerialModel::ioctlImpl(OpenFile &f, IoctlCall &call)
{
	auto &sf = f.stateAs<SerialFile>();
	const uint32_t cmd = call.cmd();
	const uint64_t value = call.arg(); /* for ioctls that take an integer argument */
	if (sf.hungUp)
		return IoctlResult::error(cmd == TIOCSPGRP ? -ENOTTY : -EIO); /* hung_up_tty_ioctl */
	auto now = Clock::now();
	switch (cmd) {
	case TCGETS: {
		termios t{};
		t.c_iflag = termios_.c_iflag;
		t.c_oflag = termios_.c_oflag;
		t.c_cflag = termios_.c_cflag;
		t.c_lflag = termios_.c_lflag;
		t.c_line = termios_.c_line;
		std::memcpy(t.c_cc, termios_.c_cc, NCCS);
		return call.replyArg(t);
	}
	case TCGETS2:
		return call.replyArg(termios_);
	case TCSETS:
		return setTermios(f, call, false, false, false);
	case TCSETSW:
		return setTermios(f, call, false, true, false);
	case TCSETSF:
		return setTermios(f, call, false, true, true);
	case TCSETS2:
		return setTermios(f, call, true, false, false);
	case TCSETSW2:
		return setTermios(f, call, true, true, false);
	case TCSETSF2:
		return setTermios(f, call, true, true, true);
	case TIOCMGET: {
		/* uart_tiocmget: the driver's outputs plus the inputs it reads from MSR. */
		uint8_t m = uart_.peek(UART_MSR);
		int v = static_cast<int>(mctrl_);
		if (m & UART_MSR_DCD)
			v |= TIOCM_CAR;
		if (m & UART_MSR_RI)
			v |= TIOCM_RNG;
		if (m & UART_MSR_DSR)
			v |= TIOCM_DSR;
		if (m & UART_MSR_CTS)
			v |= TIOCM_CTS;
		if (!call.writeUser(call.arg(), v))
			return call.done();
		modemStatus(); /* the MSR read clears the deltas (counted when MSI is enabled) */
		return call.done(0);
	}
	case TIOCMSET:
	case TIOCMBIS:
	case TIOCMBIC: {
		auto v = call.argIn<int>();
		if (!v)
			return call.done();
		unsigned bits = static_cast<unsigned>(*v);
		unsigned set = 0, clear = 0;
		if (cmd == TIOCMBIS) {
			set = bits;
		} else if (cmd == TIOCMBIC) {
			clear = bits;
		} else {
			set = bits;
			clear = ~bits;
		}
		/* tty_tiocmset: bits the UART lacks are ignored */
		const unsigned mask = TIOCM_DTR | TIOCM_RTS | TIOCM_OUT1 | TIOCM_OUT2 | TIOCM_LOOP;
		setMctrl((mctrl_ & ~(clear & mask)) | (set & mask));
		notify();
		return call.done(0);
	}
	case TIOCINQ:
		return call.replyArg(static_cast<int>(inq()));
	case TIOCOUTQ:
		return call.replyArg(static_cast<int>(xmit_.size() + ctx_.streamTxPending()));
	case TCFLSH:
		switch (value) {
		case TCIFLUSH:
			flushInput();
			break;
		case TCOFLUSH:
			flushOutput();
			break;
		case TCIOFLUSH:
			flushInput();
			flushOutput();
			break;
		default:
			return IoctlResult::error(-EINVAL);
		}
		notify(POLLOUT);
		return call.done(0);
	case TCXONC:
		switch (value) {
		case TCOOFF:
			if (!tcoStopped_) {
				tcoStopped_ = flowStopped_ = true;
				stopTx();
			}
			break;
		case TCOON:
			if (tcoStopped_) {
				tcoStopped_ = flowStopped_ = false;
				startTx();
			}
			break;
		case TCIOFF:
		case TCION: {
			uint8_t c = cc(value == TCIOFF ? VSTOP : VSTART);
			if (c) {
				xchar_ = c;
				startTx();
			}
			break;
		}
		default:
			return IoctlResult::error(-EINVAL);
		}
		return call.done(0);
	case TCSBRK:
	case TCSBRKP:
	case TIOCSBRK: {
		/* Each waits until what was written has left (tcdrain is TCSBRK with a non-zero argument). */
		if (!sf.breakUntil && !drained())
			return IoctlResult::wouldBlock();
		if (cmd == TIOCSBRK) {
			setBreak(true);
			return call.done(0);
		}
		if (cmd == TCSBRK && value != 0)
			return call.done(0);
		if (!sf.breakUntil) {
			unsigned ms = (cmd == TCSBRKP && value)
					      ? static_cast<unsigned>(std::min<uint64_t>(value, 600)) * 100
					      : 250;
			setBreak(true);
			sf.breakUntil = now + std::chrono::milliseconds(ms);
			scheduleWake(*sf.breakUntil);
			return IoctlResult::wouldBlock();
		}
		if (now < *sf.breakUntil)
			return IoctlResult::wouldBlock();
		sf.breakUntil.reset();
		setBreak(false);
		return call.done(0);
	}
	case TIOCCBRK:
		setBreak(false);
		return call.done(0);
	case TIOCEXCL:
		exclusive_ = true;
		return call.done(0);
	case TIOCNXCL:
		exclusive_ = false;
		return call.done(0);
	case TIOCGEXCL:
		return call.replyArg(static_cast<int>(exclusive_));
	case TIOCGSERIAL: {
		serial_struct ss{};
		ss.type = PORT_16550A;
		ss.line = 0;
		ss.flags = static_cast<int>(ASYNC_SKIP_TEST | ASYNC_BOOT_AUTOCONF);
		ss.xmit_fifo_size = Uart16550::kFifoSize;
		ss.baud_base = static_cast<int>(config_.clock / 16);
		ss.close_delay = 50;
		ss.closing_wait = 3000;
		ss.io_type = SERIAL_IO_PORT;
		return call.replyArg(ss);
	}
	case TIOCGICOUNT:
		return call.replyArg(icount_);
	case TIOCSERGETLSR:
		return call.replyArg(static_cast<unsigned>((uart_.peek(UART_LSR) & UART_LSR_TEMT) ? TIOCSER_TEMT : 0));
	case TIOCGWINSZ:
		return call.replyArg(winsize_);
	case TIOCSWINSZ: {
		auto w = call.argIn<winsize>();
		if (!w)
			return call.done();
		winsize_ = *w;
		return call.done(0);
	}
	case TIOCGETD:
		return call.replyArg(static_cast<int>(N_TTY));
	case TIOCSETD: {
		auto d = call.argIn<int>();
		if (!d)
			return call.done();
		return call.done(*d == N_TTY ? 0 : -EINVAL); /* only n_tty is modelled */
	}
	default:
		return IoctlResult::error(-ENOTTY);
	}
}

} // namespace devemu::serial

namespace devemu {

void registerSerialModel(ModelRegistry &registry)
{
	registry.add(
		{ "serial", "16550A UART tty: termios ioctls, modem lines, far end loopback/pty/tcp/unix/python",
		  "far=loopback|pty|tcp:PORT|tcp:HOST:PORT|unix:PATH|python:FILE[:CLASS]  the other end of the line "
		  "(default loopback; a Python class's default name is FarEnd)\n"
		  "clock=HZ              UART input clock; the top rate is HZ/16 (default 1843200: 115200 baud)\n"
		  "pace=baud|none        characters take their time on the wire at the set rate, or none (default "
		  "baud)\n",
		  [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			  serial::SerialConfig config;
			  config.clock =
				  static_cast<uint32_t>(opts.number("clock", 1843200, 16 * 50, 64ULL * 1000 * 1000));
			  config.paced = opts.choice("pace", "baud", { "baud", "none" }) == "baud";
			  std::string error;
			  if (!parseFarSpec(opts.string("far", "loopback"), config.far, error))
				  opts.fail("far", error);
			  if (!opts.error().empty())
				  return nullptr;
			  return std::make_unique<serial::SerialModel>(ctx, std::move(config));
		  },
		  injectHelp(serial::SerialModel::kVerbs) });
}

} // namespace devemu
