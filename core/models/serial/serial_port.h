// SPDX-License-Identifier: MIT
// serial: the serial port model, the state its 8250 driver, line, line discipline and tty surface share.
#pragma once

#include "chardev.h"
#include "uart16550.h"

#include "devemu/inject_verbs.h"
#include "devemu/model.h"
#include "devemu/strand_timer.h"

#include <asm/termbits.h>
#include <linux/serial.h>
#include <sys/ioctl.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

/* Modem-control bits that glibc's <sys/ioctl.h> leaves out (asm-generic/termios.h). */
#ifndef TIOCM_OUT1
#define TIOCM_OUT1 0x2000
#define TIOCM_OUT2 0x4000
#define TIOCM_LOOP 0x8000
#endif

namespace devemu::serial {

using Clock = std::chrono::steady_clock;

/*
 * The serial port as the kernel assembles it: the UART (Uart16550) under an
 * 8250-style driver (port_8250.cpp), the wire to the far end (line.cpp), an
 * n_tty line discipline (n_tty.cpp) and the tty surface with its termios
 * ioctls (tty.cpp); the control side is in control.cpp. One class, because
 * they share one port's state as struct uart_port and tty_struct do.
 */
struct SerialFile final : FileState {
	bool hungUp = false;
	std::optional<Clock::time_point> vtimeDeadline; /* VMIN=0, VTIME>0: when this read gives up */
	std::optional<Clock::time_point> breakUntil; /* TCSBRK/TCSBRKP: the break this caller sends */
};

struct SerialConfig {
	FarSpec far;
	uint32_t clock = 1843200; /* UART input clock: baud = clock / (16 * divisor) */
	bool paced = true;
};

class SerialModel final : public Model
{
public:
	static constexpr size_t kXmitSize = 4096; /* UART_XMIT_SIZE */
	static constexpr size_t kInputSize = 65536; /* n_tty buffer plus the flip buffers, before input is lost */
	static constexpr size_t kThrottle = 128; /* TTY_THRESHOLD_THROTTLE / UNTHROTTLE */
	static constexpr size_t kWakeupChars = 256; /* WAKEUP_CHARS */
	static constexpr size_t kWireQueue = 4096; /* bytes from a socket/pty far end in flight on the line */

	SerialModel(DeviceContext &ctx, SerialConfig config)
		: ctx_(ctx), config_(std::move(config)), lineTimer_(ctx.strand()), wakeTimer_(ctx.strand()),
		  termios_(initialTermios())
	{
		/* Power-on: the far end's lines are simply there, and the port is configured as firmware left it (9600 8N1). */
		uart_.setModemInputs(farLines_);
		uart_.read(UART_MSR);
		quiet_ = true; /* the core has no model to retry yet */
		programUart(nullptr);
		quiet_ = false;
	}

	int start(std::string &error) override;
	/* The termios a port starts with (tty_std_termios). */
	static termios2 initialTermios();

	~SerialModel() override
	{
		if (far_)
			far_->stop();
	}

	int open(OpenFile &f) override
	{
		if (exclusive_ && f.uid != 0)
			return -EBUSY; /* TIOCEXCL: only CAP_SYS_ADMIN may open it again */
		auto state = std::make_unique<SerialFile>();
		files_.insert(state.get());
		f.state = std::move(state);
		if (opens_++ == 0)
			startup();
		return 0;
	}

	void release(OpenFile &f) override
	{
		files_.erase(&f.stateAs<SerialFile>());
		/* No notify() from here: the core may be tearing down its drivers. */
		quiet_ = true;
		if (--opens_ == 0)
			shutdown();
		quiet_ = false;
		updateDivert(); /* the last hung-up file may be gone */
	}

	ssize_t read(OpenFile &f, std::span<std::byte> out) override;
	ssize_t write(OpenFile &f, std::span<const std::byte> in) override;
	/*
	 * The line's bytes stream through the kernel shim's FIFOs (4 KiB each: what waits there is
	 * queued output and unread input) while the line discipline reads as a FIFO does: raw
	 * (non-canonical, VTIME 0, VMIN 1 or VMIN 0's polling reads) and no hung-up file. Otherwise
	 * the direction is diverted to read()/write() (updateDivert). termios stays on the request path.
	 */
	StreamSpec stream() const override { return { .rx = true, .tx = true, .fifoSize = 4096 }; }
	size_t produce(std::span<std::byte> out) override;
	size_t consume(std::span<const std::byte> in) override;
	IoctlResult ioctl(OpenFile &f, IoctlCall &call) override;
	uint32_t poll(const OpenFile &f) override;
	uint32_t readable(const OpenFile &) override { return static_cast<uint32_t>(inq()); }
	uint32_t writable(const OpenFile &) override { return static_cast<uint32_t>(kXmitSize - xmit_.size()); }
	uint64_t dropped() const override { return icount_.buf_overrun + icount_.overrun; }
	int inject(const std::vector<std::string> &args, std::string &reply) override;

	static const InjectVerb<SerialModel> kVerbs[5];

	/* For unit tests: the register file as the driver left it. */
	const Uart16550 &uart() const { return uart_; }

private:
	void notify(uint32_t pulse = 0)
	{
		if (!quiet_)
			ctx_.notify(pulse);
	}

	/* driver (8250) */
	void startup();
	void shutdown();
	void programUart(const termios2 *old);
	unsigned chooseBaud(termios2 &t, const termios2 *old) const;
	void setMctrl(unsigned mctrl);
	void startTx();
	void stopTx();
	void service();
	uint8_t rxChars(uint8_t lsrv);
	void pushFlip();
	uint8_t modemStatus();
	void txChars();
	void setBreak(bool on);
	void reportLine();
	void setFarLines(uint8_t mask, uint8_t value);
	/* Everything written has left the transmitter: the FIFO's bytes, the buffer's, the chip's. */
	bool drained() const
	{
		return xmit_.empty() && !xchar_ && !uart_.transmitting() && uart_.txCount() == 0 &&
		       ctx_.streamTxPending() == 0;
	}
	bool txStopped() const { return flowStopped_ || hwStopped_; }

	/* line: one character time per step */
	void armLine();
	void tick();
	double charSeconds() const;
	void fromFarEnd(const uint8_t *p, size_t n);

	/* line discipline (n_tty) */
	void receiveChar(uint8_t c, char flag);
	void receiveNormal(uint8_t c);
	void putInput(uint8_t c);
	void eraser(uint8_t c);
	void echo(uint8_t c);
	void echoRaw(uint8_t c);
	bool outputChar(uint8_t c, bool echoing);
	void flushInput();
	void flushOutput();
	void isig();
	void checkThrottle();
	void hangup();
	size_t inq() const;
	size_t takeRaw(std::span<std::byte> out);
	bool inputAvailable(bool forPoll) const;
	bool canonical() const { return termios_.c_lflag & ICANON; }
	/* Tells the core which stream directions need the file's calls now (see stream()). */
	void updateDivert();
	uint8_t cc(int index) const { return termios_.c_cc[index]; }
	bool isCc(uint8_t c, int index) const { return cc(index) != 0 && c == cc(index); }

	/* termios and ioctls */
	IoctlResult ioctlImpl(OpenFile &f, IoctlCall &call);
	IoctlResult setTermios(OpenFile &f, IoctlCall &call, bool kernel2, bool wait, bool flush);
	void applyTermios(const termios2 &requested);
	void scheduleWake(Clock::time_point at);
	void wake();
	std::string info() const;

	/* control side */
	int injectInfo(const std::vector<std::string> &args, std::string &reply);
	int injectBreak(const std::vector<std::string> &args, std::string &reply);
	int injectBytes(const std::vector<std::string> &args, std::string &reply);
	int injectModem(const std::vector<std::string> &args, std::string &reply);

	DeviceContext &ctx_;
	SerialConfig config_;
	std::shared_ptr<FarEnd> far_;
	Uart16550 uart_;
	StrandTimer lineTimer_; /* the next character time while the line is busy */
	StrandTimer wakeTimer_; /* the next VTIME or break deadline */
	std::optional<Clock::time_point> wakeAt_;
	Clock::time_point lineLast_{};
	double credit_ = 0;
	unsigned rxIdleChars_ = 0;

	/* The wire from the far end: characters (or a break, flag set) still to arrive at our receiver. */
	std::deque<std::pair<uint8_t, bool>> wire_;
	uint8_t farLines_ = UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD;
	uint64_t farSent_ = 0; /* characters that reached the far end */

	/* driver state (struct uart_8250_port / uart_port) */
	uint8_t ier_ = 0;
	uint8_t lcr_ = 0;
	uint8_t fcr_ = 0;
	unsigned mctrl_ = 0; /* TIOCM_DTR|RTS|OUT1|OUT2|LOOP */
	std::deque<uint8_t> xmit_;
	std::optional<uint8_t> xchar_;
	bool flowStopped_ = false; /* stop_tty: IXON STOP received, or TCOOFF */
	bool tcoStopped_ = false;
	bool hwStopped_ = false; /* CRTSCTS and CTS low */
	bool throttled_ = false;
	bool exclusive_ = false;
	bool breakOn_ = false;
	unsigned opens_ = 0;
	bool quiet_ = false;
	std::deque<std::pair<uint8_t, char>> flip_; /* received, not yet through the line discipline */
	bool flipping_ = false;
	serial_icounter_struct icount_{};
	std::set<SerialFile *> files_;

	/* tty state */
	termios2 termios_;
	winsize winsize_{};
	std::deque<uint8_t> in_;
	size_t committed_ = 0; /* canonical: bytes of in_ that belong to completed lines */
	std::deque<std::pair<size_t, bool>>
		delims_; /* canonical: offsets (from in_ front) of line ends, true for EOF */
	bool lnext_ = false;
	unsigned column_ = 0;
	unsigned canonColumn_ = 0;
	bool erasing_ = false;
	Clock::time_point lastRx_{};
};

} // namespace devemu::serial
