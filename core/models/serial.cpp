// SPDX-License-Identifier: MIT
// serial: a 16550A UART (register file, FIFOs, divisor latch, modem lines) behind the Linux tty ABI (termios ioctls, n_tty).
#include "serial.h"

#include "devemu/inject_text.h"
#include "devemu/inject_verbs.h"

#include "devemu/log.h"
#include "devemu/model_registry.h"
#include "devemu/number_text.h"
#include "devemu/strand_timer.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <list>
#include <memory>
#include <poll.h>
#include <set>
#include <stdlib.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <asm/termbits.h>
#include <linux/serial.h>

/* Modem-control bits that glibc's <sys/ioctl.h> leaves out (asm-generic/termios.h). */
#ifndef TIOCM_OUT1
#define TIOCM_OUT1 0x2000
#define TIOCM_OUT2 0x4000
#define TIOCM_LOOP 0x8000
#endif

namespace devemu {

namespace serial {

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
	return 1 + wordLength() + ((lcr_ & lcr::PARITY) ? 1 : 0) + ((lcr_ & lcr::STOP) ? 2 : 1);
}

unsigned Uart16550::rxTrigger() const
{
	switch (fcr_ & 0xc0) {
	case fcr::TRIGGER_4:
		return 4;
	case fcr::TRIGGER_8:
		return 8;
	case fcr::TRIGGER_14:
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
	if (mcr_ & mcr::RTS)
		v |= msr::CTS;
	if (mcr_ & mcr::DTR)
		v |= msr::DSR;
	if (mcr_ & mcr::OUT1)
		v |= msr::RI;
	if (mcr_ & mcr::OUT2)
		v |= msr::DCD;
	return v;
}

void Uart16550::track(uint8_t before)
{
	uint8_t after = msrLines();
	uint8_t changed = before ^ after;
	if (changed & msr::CTS)
		msrDelta_ |= msr::DCTS;
	if (changed & msr::DSR)
		msrDelta_ |= msr::DDSR;
	if (changed & msr::DCD)
		msrDelta_ |= msr::DDCD;
	if ((before & msr::RI) && !(after & msr::RI))
		msrDelta_ |= msr::TERI; /* trailing edge only */
}

uint8_t Uart16550::lsrValue() const
{
	uint8_t v = 0;
	if (!rx_.empty()) {
		v |= lsr::DR;
		v |= rx_.front().errors; /* error bits belong to the character at the top of the FIFO */
	}
	if (overrun_)
		v |= lsr::OE;
	if (tx_.empty())
		v |= lsr::THRE;
	if (tx_.empty() && !tsr_)
		v |= lsr::TEMT;
	if (fcr_ & fcr::ENABLE)
		for (const auto &r : rx_)
			if (r.errors) {
				v |= lsr::FIFOE;
				break;
			}
	return v;
}

uint8_t Uart16550::iirValue() const
{
	uint8_t id = iir::NO_INT;
	if ((ier_ & ier::RLSI) && (overrun_ || (!rx_.empty() && rx_.front().errors)))
		id = iir::RLSI;
	else if ((ier_ & ier::RDI) && !rx_.empty() && rx_.size() >= rxTrigger())
		id = iir::RDI;
	else if ((ier_ & ier::RDI) && !rx_.empty() && timeoutPending_)
		id = iir::TIMEOUT;
	else if ((ier_ & ier::THRI) && thriPending_)
		id = iir::THRI;
	else if ((ier_ & ier::MSI) && msrDelta_)
		id = iir::MSI;
	return id | ((fcr_ & fcr::ENABLE) ? iir::FIFOS : 0);
}

uint8_t Uart16550::peek(unsigned reg) const
{
	bool dlab = lcr_ & lcr::DLAB;
	switch (reg & 7) {
	case RBR:
		return dlab ? dll_ : (rx_.empty() ? 0 : rx_.front().c);
	case IER:
		return dlab ? dlm_ : ier_;
	case IIR:
		return iirValue();
	case LCR:
		return lcr_;
	case MCR:
		return mcr_;
	case LSR:
		return lsrValue();
	case MSR:
		return msrValue();
	default:
		return scr_;
	}
}

uint8_t Uart16550::read(unsigned reg)
{
	uint8_t v = peek(reg);
	switch (reg & 7) {
	case RBR:
		if (!(lcr_ & lcr::DLAB) && !rx_.empty()) {
			rx_.pop_front();
			timeoutPending_ = false;
		}
		break;
	case IIR:
		if ((v & iir::ID_MASK) == iir::THRI)
			thriPending_ = false;
		break;
	case LSR:
		overrun_ = false;
		if (!rx_.empty())
			rx_.front().errors = 0;
		break;
	case MSR:
		msrDelta_ = 0;
		break;
	}
	return v;
}

void Uart16550::write(unsigned reg, uint8_t value)
{
	bool dlab = lcr_ & lcr::DLAB;
	switch (reg & 7) {
	case THR:
		if (dlab) {
			dll_ = value;
			break;
		}
		thriPending_ = false;
		if (!tsr_ && tx_.empty()) {
			tsr_ = value; /* straight into the shift register: THR is empty again at once */
			thriPending_ = true;
		} else if (tx_.size() < ((fcr_ & fcr::ENABLE) ? kFifoSize : 1)) {
			tx_.push_back(value);
		} else {
			txDropped_++; /* writing a full FIFO loses the character, as on the chip */
		}
		break;
	case IER:
		if (dlab) {
			dlm_ = value;
			break;
		}
		/* Enabling the THRE interrupt while THR is empty raises it (the 16550's behaviour). */
		if ((value & ier::THRI) && !(ier_ & ier::THRI) && tx_.empty())
			thriPending_ = true;
		ier_ = value & 0x0f;
		break;
	case FCR:
		if ((value ^ fcr_) & fcr::ENABLE) {
			rx_.clear();
			tx_.clear();
			timeoutPending_ = false;
		}
		if (value & fcr::CLEAR_RCVR) {
			rx_.clear();
			timeoutPending_ = false;
		}
		if (value & fcr::CLEAR_XMIT)
			tx_.clear();
		fcr_ = value & (fcr::ENABLE | fcr::DMA_SELECT | 0xc0);
		if (!(fcr_ & fcr::ENABLE))
			fcr_ = 0;
		break;
	case LCR:
		lcr_ = value;
		break;
	case MCR: {
		uint8_t before = msrLines();
		mcr_ = value & mcr::MASK;
		track(before);
		break;
	}
	case LSR:
	case MSR:
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
		if (!(fcr_ & fcr::ENABLE))
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
	if (!rx_.empty() && (fcr_ & fcr::ENABLE))
		timeoutPending_ = true;
}

void Uart16550::setModemInputs(uint8_t lines)
{
	uint8_t before = msrLines();
	lines_ = lines & msr::LINES;
	track(before);
}

} // namespace serial

namespace {

using Clock = std::chrono::steady_clock;
using serial::Uart16550;
namespace lsr = serial::lsr;
namespace msr = serial::msr;
namespace mcr = serial::mcr;
namespace ier = serial::ier;
namespace lcrb = serial::lcr;
namespace fcrb = serial::fcr;

/* ---- termios speed helpers (drivers/tty/tty_baudrate.c) ---- */

constexpr std::array<speed_t, 31> kBaudTable = { 0,	  50,	   75,	    110,     134,     150,     200,    300,
						 600,	  1200,	   1800,    2400,    4800,    9600,    19200,  38400,
						 57600,	  115200,  230400,  460800,  500000,  576000,  921600, 1000000,
						 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000 };
constexpr std::array<tcflag_t, 31> kBaudBits = { B0,	   B50,	     B75,      B110,	 B134,	   B150,     B200,
						 B300,	   B600,     B1200,    B1800,	 B2400,	   B4800,    B9600,
						 B19200,   B38400,   B57600,   B115200,	 B230400,  B460800,  B500000,
						 B576000,  B921600,  B1000000, B1152000, B1500000, B2000000, B2500000,
						 B3000000, B3500000, B4000000 };

speed_t codeToBaud(tcflag_t cbaud, speed_t other)
{
	if (cbaud == BOTHER)
		return other;
	if (cbaud & CBAUDEX) {
		cbaud &= ~CBAUDEX;
		if (cbaud < 1 || cbaud + 15 >= kBaudTable.size())
			return 0;
		cbaud += 15;
	}
	return cbaud < kBaudTable.size() ? kBaudTable[cbaud] : 0;
}

/* tty_termios_baud_rate() */
speed_t outputBaud(const termios2 &t)
{
	return codeToBaud(t.c_cflag & CBAUD, t.c_ospeed);
}

/* tty_termios_input_baud_rate() */
speed_t inputBaud(const termios2 &t)
{
	tcflag_t cbaud = (t.c_cflag >> IBSHIFT) & CBAUD;
	if (cbaud == B0)
		return outputBaud(t);
	return codeToBaud(cbaud, t.c_ispeed);
}

/* tty_termios_encode_baud_rate(): a Bnnn code when within 2% of one (exact when BOTHER was asked), else BOTHER. */
void encodeBaud(termios2 &t, speed_t ibaud, speed_t obaud)
{
	if (obaud == 0)
		ibaud = 0;
	t.c_ispeed = ibaud;
	t.c_ospeed = obaud;
	bool ibinput = ((t.c_cflag >> IBSHIFT) & CBAUD) != B0;
	speed_t iclose = ibaud / 50, oclose = obaud / 50;
	if ((t.c_cflag & CBAUD) == BOTHER) {
		oclose = 0;
		if (!ibinput)
			iclose = 0;
	}
	if (((t.c_cflag >> IBSHIFT) & CBAUD) == BOTHER)
		iclose = 0;
	t.c_cflag &= ~CBAUD;
	t.c_cflag &= ~(CBAUD << IBSHIFT);
	int ifound = -1, ofound = -1;
	for (size_t i = 0; i < kBaudTable.size(); i++) {
		if (obaud - oclose <= kBaudTable[i] && obaud + oclose >= kBaudTable[i]) {
			t.c_cflag |= kBaudBits[i];
			ofound = static_cast<int>(i);
		}
		if (ibaud - iclose <= kBaudTable[i] && ibaud + iclose >= kBaudTable[i]) {
			if (ofound == static_cast<int>(i) && !ibinput) {
				ifound = static_cast<int>(i);
			} else {
				ifound = static_cast<int>(i);
				t.c_cflag |= kBaudBits[i] << IBSHIFT;
			}
		}
	}
	if (ofound == -1)
		t.c_cflag |= BOTHER;
	if (ifound == -1 && (ibaud != obaud || ibinput))
		t.c_cflag |= BOTHER << IBSHIFT;
}

termios2 defaultTermios()
{
	/* tty_std_termios as the serial core sets it up for its ports (uart_register_driver). */
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

/* ---- inject argument parsing ---- */

/* ---- the far end when it is a pty or a socket: byte streams on the device strand ---- */

class FarEnd : public std::enable_shared_from_this<FarEnd>
{
public:
	std::function<void(const uint8_t *, size_t)> onData; /* bytes the far end sent us */
	std::function<void(bool)> onPeer; /* a peer connected (true) or went away (false) */

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

template<typename Stream>
class StreamFarEnd : public FarEnd
{
public:
	void send(const std::vector<uint8_t> &bytes) override
	{
		if (!stream_ || stopped_) {
			lost_ += bytes.size();
			return;
		}
		size_t room = kMaxQueued > out_.size() ? kMaxQueued - out_.size() : 0;
		size_t n = std::min(room, bytes.size());
		out_.insert(out_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
		lost_ += bytes.size() - n;
		writeNext();
	}
	void setReading(bool want) override
	{
		want_ = want;
		readNext();
	}
	bool peerConnected() const override { return stream_.has_value(); }

protected:
	static constexpr size_t kMaxQueued = 64 * 1024;

	void attach(Stream stream)
	{
		stream_.emplace(std::move(stream));
		out_.clear();
		readNext();
	}
	virtual void detached() {}
	void detach()
	{
		if (!stream_)
			return;
		boost::system::error_code ignored;
		stream_->close(ignored);
		stream_.reset();
		reading_ = writing_ = false;
		out_.clear();
		if (onPeer)
			onPeer(false);
		detached();
	}
	void readNext()
	{
		if (!stream_ || reading_ || !want_ || stopped_)
			return;
		reading_ = true;
		auto self = std::static_pointer_cast<StreamFarEnd>(shared_from_this());
		stream_->async_read_some(asio::buffer(in_), [self](const boost::system::error_code &ec, size_t n) {
			self->reading_ = false;
			if (self->stopped_ || ec == asio::error::operation_aborted)
				return;
			if (ec) {
				self->detach();
				return;
			}
			if (self->onData)
				self->onData(self->in_.data(), n);
			self->readNext();
		});
	}
	void writeNext()
	{
		if (!stream_ || writing_ || out_.empty() || stopped_)
			return;
		writing_ = true;
		size_t n = std::min<size_t>(out_.size(), 4096);
		inflight_.assign(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(n));
		out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(n));
		auto self = std::static_pointer_cast<StreamFarEnd>(shared_from_this());
		asio::async_write(*stream_, asio::buffer(inflight_),
				  [self](const boost::system::error_code &ec, size_t) {
					  self->writing_ = false;
					  if (self->stopped_ || ec == asio::error::operation_aborted)
						  return;
					  if (ec) {
						  self->detach();
						  return;
					  }
					  self->writeNext();
				  });
	}
	void stopStream()
	{
		stopped_ = true;
		onData = nullptr;
		onPeer = nullptr;
		if (stream_) {
			boost::system::error_code ignored;
			stream_->close(ignored);
		}
	}

	std::optional<Stream> stream_;
	std::array<uint8_t, 1024> in_{};
	std::deque<uint8_t> out_;
	std::vector<uint8_t> inflight_;
	bool reading_ = false;
	bool writing_ = false;
	bool want_ = true;
	bool stopped_ = false;
};

/* A listening socket (tcp or unix): one peer at a time; a second connection is closed at once. */
template<typename Protocol>
class SocketFarEnd final : public StreamFarEnd<typename Protocol::socket>
{
public:
	SocketFarEnd(const Strand &strand, typename Protocol::endpoint endpoint, std::string label,
		     std::string unlinkPath)
		: acceptor_(strand), endpoint_(std::move(endpoint)), label_(std::move(label)),
		  unlink_(std::move(unlinkPath))
	{}
	/* Opens and binds; returns an error message or "". */
	std::string listen()
	{
		boost::system::error_code ec;
		acceptor_.open(endpoint_.protocol(), ec);
		if (!ec && std::is_same_v<Protocol, asio::ip::tcp>)
			acceptor_.set_option(typename Protocol::acceptor::reuse_address(true), ec);
		if (!ec)
			acceptor_.bind(endpoint_, ec);
		bound_ = !ec;
		if (!ec)
			acceptor_.listen(4, ec);
		if (ec)
			return ec.message();
		endpoint_ = acceptor_.local_endpoint(ec);
		return {};
	}
	void start() override { acceptNext(); }
	void stop() override
	{
		this->stopStream();
		boost::system::error_code ignored;
		acceptor_.close(ignored);
		if (bound_ && !unlink_.empty())
			::unlink(unlink_.c_str()); /* the socket file this far end created */
	}
	std::string describe() const override
	{
		if constexpr (std::is_same_v<Protocol, asio::ip::tcp>)
			return fmt::format("tcp:{}:{}", endpoint_.address().to_string(), endpoint_.port());
		else
			return fmt::format("unix:{}", endpoint_.path());
	}

private:
	void acceptNext()
	{
		auto self = std::static_pointer_cast<SocketFarEnd>(this->shared_from_this());
		acceptor_.async_accept([self](const boost::system::error_code &ec, typename Protocol::socket socket) {
			if (self->stopped_ || ec == asio::error::operation_aborted)
				return;
			if (!ec) {
				if (self->stream_) {
					boost::system::error_code ignored;
					socket.close(ignored); /* the line is taken */
				} else {
					self->attach(std::move(socket));
					if (self->onPeer)
						self->onPeer(true);
				}
			}
			self->acceptNext();
		});
	}

	typename Protocol::acceptor acceptor_;
	typename Protocol::endpoint endpoint_;
	std::string label_;
	std::string unlink_;
	bool bound_ = false;
};

/* A pseudo-terminal: we hold the master, a person or a program opens the slave. */
class PtyFarEnd final : public StreamFarEnd<asio::posix::stream_descriptor>
{
public:
	explicit PtyFarEnd(const Strand &strand) : strand_(strand) {}
	~PtyFarEnd() override
	{
		if (slave_ >= 0)
			::close(slave_);
	}
	std::string open()
	{
		int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0)
			return fmt::format("posix_openpt: {}", std::strerror(errno));
		char name[128];
		if (::grantpt(master) < 0 || ::unlockpt(master) < 0 || ::ptsname_r(master, name, sizeof(name)) != 0) {
			int err = errno;
			::close(master);
			return fmt::format("preparing the pty: {}", std::strerror(err));
		}
		path_ = name;
		/* Keep the slave open so the master never reads EIO, and make it raw so bytes pass unchanged. */
		slave_ = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (slave_ >= 0) {
			termios2 t{};
			if (::ioctl(slave_, TCGETS2, &t) == 0) {
				t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
				t.c_oflag &= ~OPOST;
				t.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
				t.c_cflag &= ~(CSIZE | PARENB);
				t.c_cflag |= CS8;
				t.c_cc[VMIN] = 1;
				t.c_cc[VTIME] = 0;
				::ioctl(slave_, TCSETS2, &t);
			}
		}
		attach(asio::posix::stream_descriptor(strand_, master));
		return {};
	}
	void start() override {}
	void stop() override { stopStream(); }
	std::string describe() const override { return "pty:" + path_; }
	bool peerConnected() const override { return true; }
	const std::string &path() const { return path_; }

private:
	Strand strand_;
	std::string path_;
	int slave_ = -1;
};

/* ---- the tty: an 8250-style driver and an n_tty-style line discipline over the UART ---- */

struct SerialFile final : FileState {
	bool hungUp = false;
	std::optional<Clock::time_point> vtimeDeadline; /* VMIN=0, VTIME>0: when this read gives up */
	std::optional<Clock::time_point> breakUntil; /* TCSBRK/TCSBRKP: the break this caller sends */
};

enum class FarKind { Loopback, Pty, Tcp, Unix };

struct SerialConfig {
	FarKind far = FarKind::Loopback;
	std::string farSpec = "loopback";
	asio::ip::address farAddress; /* tcp */
	uint16_t farPort = 0; /* tcp */
	std::string farPath; /* unix */
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
		  termios_(defaultTermios())
	{
		/* Power-on: the far end's lines are simply there, and the port is configured as firmware left it (9600 8N1). */
		uart_.setModemInputs(farLines_);
		uart_.read(serial::MSR);
		quiet_ = true; /* the core has no model to retry yet */
		programUart(nullptr);
		quiet_ = false;
	}

	int start(std::string &error) override;

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
	}

	ssize_t read(OpenFile &f, std::span<std::byte> out) override;
	ssize_t write(OpenFile &f, std::span<const std::byte> in) override;
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
	bool drained() const { return xmit_.empty() && !xchar_ && !uart_.transmitting() && uart_.txCount() == 0; }
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
	bool inputAvailable(bool forPoll) const;
	bool canonical() const { return termios_.c_lflag & ICANON; }
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
	uint8_t farLines_ = msr::CTS | msr::DSR | msr::DCD;
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

/* The far end: a pty to open, or a socket to listen on. */
int SerialModel::start(std::string &error)
{
	std::shared_ptr<FarEnd> far;
	switch (config_.far) {
	case FarKind::Loopback:
		return 0;
	case FarKind::Pty: {
		auto pty = std::make_shared<PtyFarEnd>(ctx_.strand());
		error = pty->open();
		if (error.empty())
			DEVEMU_LOG(Info, ctx_.name(), "serial far end: pty {}", pty->path());
		far = pty;
		break;
	}
	case FarKind::Tcp: {
		auto sock = std::make_shared<SocketFarEnd<asio::ip::tcp>>(
			ctx_.strand(), asio::ip::tcp::endpoint(config_.farAddress, config_.farPort), config_.farSpec,
			"");
		error = sock->listen();
		if (!error.empty())
			error = fmt::format("cannot listen on {}:{}: {}", config_.farAddress.to_string(),
					    config_.farPort, error);
		else
			DEVEMU_LOG(Info, ctx_.name(), "serial far end: listening on {}", sock->describe());
		far = sock;
		break;
	}
	case FarKind::Unix: {
		const std::string &path = config_.farPath;
		struct stat st;
		if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
			::unlink(path.c_str()); /* a stale socket of an earlier run */
		auto sock = std::make_shared<SocketFarEnd<asio::local::stream_protocol>>(
			ctx_.strand(), asio::local::stream_protocol::endpoint(path), config_.farSpec, path);
		error = sock->listen();
		if (!error.empty())
			error = fmt::format("cannot listen on {}: {}", path, error);
		else
			DEVEMU_LOG(Info, ctx_.name(), "serial far end: listening on {}", sock->describe());
		far = sock;
		break;
	}
	}
	if (!error.empty()) {
		far->stop();
		return -EIO;
	}
	far_ = std::move(far);
	far_->onData = [this](const uint8_t *p, size_t n) { fromFarEnd(p, n); };
	far_->onPeer = [this](bool up) {
		DEVEMU_LOG(Info, ctx_.name(), "far end {}: peer {}", far_->describe(), up ? "connected" : "gone");
	};
	far_->start();
	return 0;
}

/* ---------------- driver ---------------- */

void SerialModel::setMctrl(unsigned mctrl)
{
	mctrl_ = mctrl;
	uint8_t v = 0;
	if (mctrl & TIOCM_DTR)
		v |= mcr::DTR;
	if (mctrl & TIOCM_RTS)
		v |= mcr::RTS;
	if (mctrl & TIOCM_OUT1)
		v |= mcr::OUT1;
	if (mctrl & TIOCM_OUT2)
		v |= mcr::OUT2;
	if (mctrl & TIOCM_LOOP)
		v |= mcr::LOOP;
	uart_.write(serial::MCR, v);
	service();
}

/* serial8250_do_startup + uart_port_startup */
void SerialModel::startup()
{
	uart_.write(serial::FCR, fcrb::ENABLE);
	uart_.write(serial::FCR, fcrb::ENABLE | fcrb::CLEAR_RCVR | fcrb::CLEAR_XMIT);
	uart_.write(serial::FCR, 0);
	uart_.read(serial::LSR);
	uart_.read(serial::RBR);
	uart_.read(serial::IIR);
	uart_.read(serial::MSR);
	lcr_ = 3; /* 8N1 until set_termios */
	uart_.write(serial::LCR, lcr_);
	ier_ = ier::RLSI | ier::RDI;
	uart_.write(serial::IER, ier_);
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
		uart_.write(serial::IER, 0);
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
		cval |= lcrb::STOP;
	if (t.c_cflag & PARENB)
		cval |= lcrb::PARITY;
	if (!(t.c_cflag & PARODD))
		cval |= lcrb::EPAR;
	if (t.c_cflag & CMSPAR)
		cval |= lcrb::SPAR;
	unsigned baud = chooseBaud(t, old);
	unsigned quot = std::clamp<unsigned>((config_.clock + 8 * baud) / (16 * baud), 1, 0xffff);
	fcr_ = fcrb::ENABLE | fcrb::TRIGGER_8; /* UART_FCR_R_TRIG_10 for a 16550A */
	if (baud < 2400)
		fcr_ = fcrb::ENABLE | fcrb::TRIGGER_1;
	ier_ &= static_cast<uint8_t>(~ier::MSI);
	if ((t.c_cflag & CRTSCTS) || !(t.c_cflag & CLOCAL))
		ier_ |= ier::MSI;
	uart_.write(serial::IER, ier_);
	if (breakOn_)
		cval |= lcrb::SBC;
	uart_.write(serial::LCR, cval | lcrb::DLAB);
	uart_.write(serial::DLL, static_cast<uint8_t>(quot & 0xff));
	uart_.write(serial::DLM, static_cast<uint8_t>(quot >> 8));
	uart_.write(serial::LCR, cval);
	lcr_ = cval;
	uart_.write(serial::FCR, fcrb::ENABLE);
	uart_.write(serial::FCR, fcr_);
	/* The model reports the rate its divisor really produces (Bnnn when within 2% of one). */
	if (outputBaud(t) != 0) {
		unsigned real = config_.clock / (16 * quot);
		encodeBaud(t, real, real);
	}
	hwStopped_ = (t.c_cflag & CRTSCTS) && !(uart_.peek(serial::MSR) & msr::CTS);
	service();
	startTx();
}

void SerialModel::startTx()
{
	if (!(ier_ & ier::THRI) && opens_ > 0) {
		ier_ |= ier::THRI;
		uart_.write(serial::IER, ier_);
	}
	service();
	armLine();
}

void SerialModel::stopTx()
{
	if (ier_ & ier::THRI) {
		ier_ &= static_cast<uint8_t>(~ier::THRI);
		uart_.write(serial::IER, ier_);
	}
}

/* serial8250_handle_irq, run whenever the interrupt line is raised. */
void SerialModel::service()
{
	for (int guard = 0; guard < 64 && uart_.irq(); guard++) {
		uint8_t iirv = uart_.read(serial::IIR);
		if (iirv & serial::iir::NO_INT)
			break;
		uint8_t lsrv = uart_.read(serial::LSR);
		if (lsrv & (lsr::DR | lsr::BI))
			lsrv = rxChars(lsrv);
		modemStatus();
		if ((lsrv & lsr::THRE) && (ier_ & ier::THRI))
			txChars();
	}
}

/* serial8250_rx_chars / serial8250_read_char */
uint8_t SerialModel::rxChars(uint8_t lsrv)
{
	int budget = 256;
	tcflag_t iflag = termios_.c_iflag;
	uint8_t readMask = lsr::OE | lsr::THRE | lsr::DR;
	if (iflag & INPCK)
		readMask |= lsr::FE | lsr::PE;
	if (iflag & (IGNBRK | BRKINT | PARMRK))
		readMask |= lsr::BI;
	uint8_t ignoreMask = 0;
	if (iflag & IGNPAR)
		ignoreMask |= lsr::PE | lsr::FE;
	if (iflag & IGNBRK) {
		ignoreMask |= lsr::BI;
		if (iflag & IGNPAR)
			ignoreMask |= lsr::OE;
	}
	if (!(termios_.c_cflag & CREAD))
		ignoreMask |= lsr::DR;
	do {
		uint8_t ch = (lsrv & lsr::DR) ? uart_.read(serial::RBR) : 0;
		char flag = 'n';
		icount_.rx++;
		if (lsrv & (lsr::BI | lsr::PE | lsr::FE | lsr::OE)) {
			if (lsrv & lsr::BI) {
				lsrv &= static_cast<uint8_t>(~(lsr::FE | lsr::PE));
				icount_.brk++;
			} else if (lsrv & lsr::PE) {
				icount_.parity++;
			} else if (lsrv & lsr::FE) {
				icount_.frame++;
			}
			if (lsrv & lsr::OE)
				icount_.overrun++;
			lsrv &= readMask;
			if (lsrv & lsr::BI)
				flag = 'b';
			else if (lsrv & lsr::PE)
				flag = 'p';
			else if (lsrv & lsr::FE)
				flag = 'f';
		}
		/* uart_insert_char */
		if ((lsrv & ignoreMask & ~lsr::OE) == 0 && opens_ > 0)
			flip_.emplace_back(ch, flag);
		if ((lsrv & ~ignoreMask & lsr::OE) && opens_ > 0)
			flip_.emplace_back(0, 'o');
		lsrv = uart_.read(serial::LSR);
	} while ((lsrv & (lsr::DR | lsr::BI)) && --budget > 0);
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
	uint8_t status = uart_.read(serial::MSR);
	if ((status & msr::DELTAS) && (ier_ & ier::MSI)) {
		if (status & msr::TERI)
			icount_.rng++;
		if (status & msr::DDSR)
			icount_.dsr++;
		if (status & msr::DDCD) {
			icount_.dcd++;
			if (!(status & msr::DCD) && !(termios_.c_cflag & CLOCAL))
				hangup();
		}
		if (status & msr::DCTS) {
			icount_.cts++;
			if (termios_.c_cflag & CRTSCTS) {
				bool stop = !(status & msr::CTS);
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
		uart_.write(serial::THR, *xchar_);
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
		uart_.write(serial::THR, xmit_.front());
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
	lcr_ = on ? (lcr_ | lcrb::SBC) : (lcr_ & static_cast<uint8_t>(~lcrb::SBC));
	uart_.write(serial::LCR, lcr_);
	/* The far end sees the break when the line returns to mark; a loopback plug brings it back to us. */
	if (!on && config_.far == FarKind::Loopback && !uart_.loop()) {
		wire_.emplace_back(0, true);
		armLine();
	}
}

/* ---------------- the line ---------------- */

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
				if (config_.far == FarKind::Loopback)
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
				uart_.receive(0, lsr::BI);
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
		uart_.write(serial::IER, 0);
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

/* ---------------- line discipline ---------------- */

void SerialModel::putInput(uint8_t c)
{
	if (in_.size() >= kInputSize) {
		icount_.buf_overrun++;
		return;
	}
	in_.push_back(c);
}

/* Output processing (do_output_char); false when the transmit buffer has no room for it. */
bool SerialModel::outputChar(uint8_t c, bool echoing)
{
	size_t room = kXmitSize - xmit_.size();
	tcflag_t o = termios_.c_oflag;
	if (!(o & OPOST)) {
		if (room < 1)
			return false;
		xmit_.push_back(c);
		return true;
	}
	switch (c) {
	case '\n':
		if (o & ONLRET)
			column_ = 0;
		if (o & ONLCR) {
			if (room < 2)
				return false;
			canonColumn_ = column_ = 0;
			xmit_.push_back('\r');
			xmit_.push_back('\n');
			return true;
		}
		canonColumn_ = column_;
		break;
	case '\r':
		if ((o & ONOCR) && column_ == 0)
			return true;
		if (o & OCRNL) {
			c = '\n';
			if (o & ONLRET)
				canonColumn_ = column_ = 0;
			break;
		}
		canonColumn_ = column_ = 0;
		break;
	case '\t': {
		unsigned spaces = 8 - (column_ & 7);
		if ((o & TABDLY) == XTABS) {
			if (room < spaces)
				return false;
			column_ += spaces;
			xmit_.insert(xmit_.end(), spaces, ' ');
			return true;
		}
		column_ += spaces;
		break;
	}
	case '\b':
		if (column_ > 0)
			column_--;
		break;
	default:
		if (c >= 0x20 && c != 0x7f) {
			if ((o & OLCUC) && c >= 'a' && c <= 'z')
				c = static_cast<uint8_t>(c - 'a' + 'A');
			if (!((termios_.c_iflag & IUTF8) && (c & 0xc0) == 0x80))
				column_++;
		}
		break;
	}
	if (room < 1)
		return false;
	(void)echoing;
	xmit_.push_back(c);
	return true;
}

void SerialModel::echoRaw(uint8_t c)
{
	outputChar(c, true);
}

/* echo_char: control characters as ^X with ECHOCTL (tab excepted). */
void SerialModel::echo(uint8_t c)
{
	if ((termios_.c_lflag & ECHOCTL) && (c < 0x20 || c == 0x7f) && c != '\t') {
		echoRaw('^');
		echoRaw(static_cast<uint8_t>(c ^ 0x40));
	} else {
		echoRaw(c);
	}
}

/* The ERASE, WERASE and KILL characters of canonical mode (eraser()). */
void SerialModel::eraser(uint8_t c)
{
	size_t lineLen = in_.size() - committed_;
	if (lineLen == 0)
		return;
	tcflag_t l = termios_.c_lflag;
	enum { Erase, Werase, Kill } kind;
	if (isCc(c, VERASE)) {
		kind = Erase;
	} else if (isCc(c, VWERASE)) {
		kind = Werase;
	} else {
		if (!(l & ECHO)) {
			in_.resize(committed_);
			return;
		}
		if (!(l & ECHOK) || !(l & ECHOKE) || !(l & ECHOE)) {
			in_.resize(committed_);
			echo(c);
			if (l & ECHOK)
				echoRaw('\n');
			return;
		}
		kind = Kill;
	}
	bool seenAlnum = false;
	while (in_.size() > committed_) {
		uint8_t last = in_.back();
		if (kind == Werase) {
			bool alnum = std::isalnum(last) || last == '_';
			if (alnum)
				seenAlnum = true;
			else if (seenAlnum)
				break;
		}
		in_.pop_back();
		if (l & ECHO) {
			if (kind == Erase && !(l & ECHOE)) {
				echo(cc(VERASE));
			} else {
				bool control = (last < 0x20 || last == 0x7f) && last != '\t';
				int width = (control && (l & ECHOCTL)) ? 2 : 1;
				for (int i = 0; i < width; i++) {
					echoRaw('\b');
					echoRaw(' ');
					echoRaw('\b');
				}
			}
		}
		if (kind == Erase)
			break;
	}
}

void SerialModel::flushInput()
{
	in_.clear();
	delims_.clear();
	committed_ = 0;
	lnext_ = false;
	checkThrottle();
	notify();
}

void SerialModel::flushOutput()
{
	xmit_.clear();
	notify(POLLOUT);
}

/* isig() for a tty that is nobody's controlling terminal: no process group to signal; the queues are flushed. */
void SerialModel::isig()
{
	if (termios_.c_lflag & NOFLSH)
		return;
	flushOutput();
	flushInput();
}

void SerialModel::receiveChar(uint8_t c, char flag)
{
	tcflag_t i = termios_.c_iflag;
	switch (flag) {
	case 'b': /* n_tty_receive_break */
		if (i & IGNBRK)
			return;
		if (i & BRKINT) {
			isig();
			return;
		}
		if (i & PARMRK) {
			putInput(0xff);
			putInput(0);
		}
		putInput(0);
		break;
	case 'p':
	case 'f': /* n_tty_receive_parity_error */
		if (i & INPCK) {
			if (i & IGNPAR)
				return;
			if (i & PARMRK) {
				putInput(0xff);
				putInput(0);
				putInput(c);
			} else {
				putInput(0);
			}
		} else {
			putInput(c);
		}
		break;
	case 'o': /* n_tty_receive_overrun: counted in icount, nothing queued */
		return;
	default:
		receiveNormal(c);
		return;
	}
	if (!canonical())
		committed_ = in_.size();
	checkThrottle();
}

/* n_tty_receive_char_special and its fast paths. */
void SerialModel::receiveNormal(uint8_t c)
{
	tcflag_t i = termios_.c_iflag;
	tcflag_t l = termios_.c_lflag;
	if (i & ISTRIP)
		c &= 0x7f;
	if ((i & IUCLC) && (l & IEXTEN) && c >= 'A' && c <= 'Z')
		c = static_cast<uint8_t>(c - 'A' + 'a');
	bool parmrk = c == 0xff && (i & PARMRK);
	if (lnext_) {
		lnext_ = false;
		if (l & ECHO) {
			if (canonical() && in_.size() == committed_)
				canonColumn_ = column_;
			echo(c);
		}
		if (parmrk)
			putInput(c);
		putInput(c);
		if (!canonical())
			committed_ = in_.size();
		checkThrottle();
		return;
	}
	if (i & IXON) {
		if (isCc(c, VSTART)) {
			if (flowStopped_ && !tcoStopped_) {
				flowStopped_ = false;
				startTx();
			}
			return;
		}
		if (isCc(c, VSTOP)) {
			if (!flowStopped_) {
				flowStopped_ = true;
				stopTx();
			}
			return;
		}
	}
	if (l & ISIG) {
		if (isCc(c, VINTR) || isCc(c, VQUIT) || isCc(c, VSUSP)) {
			isig();
			if (l & ECHO)
				echo(c);
			startTx();
			return;
		}
	}
	if (flowStopped_ && !tcoStopped_ && (i & IXON) && (i & IXANY)) {
		flowStopped_ = false;
		startTx();
	}
	if (c == '\r') {
		if (i & IGNCR)
			return;
		if (i & ICRNL)
			c = '\n';
	} else if (c == '\n' && (i & INLCR)) {
		c = '\r';
	}
	if (canonical()) {
		if (isCc(c, VERASE) || isCc(c, VKILL) || (isCc(c, VWERASE) && (l & IEXTEN))) {
			eraser(c);
			startTx();
			return;
		}
		if (isCc(c, VLNEXT) && (l & IEXTEN)) {
			lnext_ = true;
			if ((l & ECHO) && (l & ECHOCTL)) {
				echoRaw('^');
				echoRaw('\b');
				startTx();
			}
			return;
		}
		bool newline = c == '\n';
		bool eof = isCc(c, VEOF);
		bool eol = isCc(c, VEOL) || (isCc(c, VEOL2) && (l & IEXTEN));
		if (newline || eof || eol) {
			if (newline && ((l & ECHO) || (l & ECHONL)))
				echoRaw('\n');
			else if (eol && (l & ECHO))
				echo(c);
			if (eol && parmrk)
				putInput(c);
			if (in_.size() >= kInputSize) {
				icount_.buf_overrun++;
				return;
			}
			/* The EOF character ends the line but is not part of it (n_tty stores a marker). */
			in_.push_back(eof ? 0 : c);
			delims_.emplace_back(in_.size() - 1, eof);
			committed_ = in_.size();
			startTx();
			checkThrottle();
			return;
		}
	}
	if (l & ECHO) {
		if (c == '\n') {
			echoRaw('\n');
		} else {
			if (canonical() && in_.size() == committed_)
				canonColumn_ = column_;
			echo(c);
		}
		startTx();
	}
	if (parmrk)
		putInput(c);
	putInput(c);
	if (!canonical())
		committed_ = in_.size();
	checkThrottle();
}

/* n_tty_check_throttle / unthrottle: RTS with CRTSCTS, STOP/START with IXOFF. */
void SerialModel::checkThrottle()
{
	size_t room = kInputSize - in_.size();
	if (!throttled_ && room < kThrottle) {
		throttled_ = true;
		if ((termios_.c_iflag & IXOFF) && cc(VSTOP)) {
			xchar_ = cc(VSTOP);
			startTx();
		}
		if (termios_.c_cflag & CRTSCTS)
			setMctrl(mctrl_ & ~TIOCM_RTS);
	} else if (throttled_ && in_.size() <= kThrottle) {
		throttled_ = false;
		if ((termios_.c_iflag & IXOFF) && cc(VSTART)) {
			xchar_ = cc(VSTART);
			startTx();
		}
		if (termios_.c_cflag & CRTSCTS)
			setMctrl(mctrl_ | TIOCM_RTS);
	}
}

/* tty_hangup after carrier loss: the files open now read EOF and fail writes with EIO. */
void SerialModel::hangup()
{
	for (auto *f : files_)
		f->hungUp = true;
	flushInput();
	flushOutput();
	if (termios_.c_cflag & HUPCL)
		setMctrl(mctrl_ & ~(TIOCM_DTR | TIOCM_RTS));
	notify(POLLHUP | POLLIN);
}

size_t SerialModel::inq() const
{
	if (!canonical())
		return in_.size();
	/* inq_canon: bytes of completed lines, not counting EOF markers */
	size_t n = committed_;
	for (const auto &[pos, eof] : delims_)
		if (eof && pos < committed_)
			n--;
	return n;
}

/* input_available_p */
bool SerialModel::inputAvailable(bool forPoll) const
{
	if (canonical())
		return committed_ > 0;
	size_t amt = (forPoll && cc(VTIME) == 0 && cc(VMIN) > 0) ? cc(VMIN) : 1;
	return in_.size() >= amt;
}

ssize_t SerialModel::read(OpenFile &f, std::span<std::byte> out)
{
	auto &sf = f.stateAs<SerialFile>();
	if (sf.hungUp)
		return 0;
	if (out.empty())
		return 0;
	size_t n = 0;
	if (canonical()) {
		if (committed_ == 0)
			return -EAGAIN;
		n = std::min(out.size(), committed_);
		bool eofMarker = false;
		if (!delims_.empty() && delims_.front().first < n) {
			n = delims_.front().first + 1;
			eofMarker = delims_.front().second;
			delims_.pop_front();
		}
		size_t copy = eofMarker ? n - 1 : n;
		for (size_t i = 0; i < copy; i++)
			out[i] = std::byte(in_[i]);
		in_.erase(in_.begin(), in_.begin() + static_cast<ptrdiff_t>(n));
		committed_ -= n;
		for (auto &d : delims_)
			d.first -= n;
		n = copy;
	} else {
		unsigned vmin = cc(VMIN), vtime = cc(VTIME);
		size_t avail = in_.size();
		auto now = Clock::now();
		if (avail == 0) {
			if (vmin > 0)
				return -EAGAIN;
			if (vtime == 0)
				return 0; /* VMIN=0, VTIME=0: polling read */
			/* VMIN=0, VTIME>0: wait at most VTIME tenths of a second for the first byte. */
			if (f.flags & O_NONBLOCK)
				return -EAGAIN;
			if (!sf.vtimeDeadline) {
				sf.vtimeDeadline = now + std::chrono::milliseconds(100 * vtime);
				scheduleWake(*sf.vtimeDeadline);
				return -EAGAIN;
			}
			if (now < *sf.vtimeDeadline)
				return -EAGAIN;
			sf.vtimeDeadline.reset();
			return 0;
		}
		sf.vtimeDeadline.reset();
		size_t need = vmin ? std::min<size_t>(vmin, out.size()) : 1;
		if (avail < need && !(f.flags & O_NONBLOCK)) {
			if (vtime == 0)
				return -EAGAIN;
			/* VMIN>0, VTIME>0: the inter-byte timer restarts with each byte received. */
			auto deadline = lastRx_ + std::chrono::milliseconds(100 * vtime);
			if (now < deadline) {
				scheduleWake(deadline);
				return -EAGAIN;
			}
		}
		n = std::min(avail, out.size());
		for (size_t i = 0; i < n; i++)
			out[i] = std::byte(in_[i]);
		in_.erase(in_.begin(), in_.begin() + static_cast<ptrdiff_t>(n));
		committed_ = in_.size();
	}
	checkThrottle();
	notify(); /* readiness changed: republish the poll shadow (the kernel shim answers poll from it) */
	return static_cast<ssize_t>(n);
}

ssize_t SerialModel::write(OpenFile &f, std::span<const std::byte> in)
{
	if (f.stateAs<SerialFile>().hungUp)
		return -EIO;
	size_t done = 0;
	for (auto b : in) {
		if (!outputChar(static_cast<uint8_t>(b), false))
			break;
		done++;
	}
	if (done) {
		startTx();
		notify();
	}
	return done ? static_cast<ssize_t>(done) : -EAGAIN;
}

uint32_t SerialModel::poll(const OpenFile &f)
{
	if (f.stateAs<SerialFile>().hungUp)
		return POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM | POLLERR | POLLHUP;
	uint32_t mask = 0;
	if (inputAvailable(true))
		mask |= POLLIN | POLLRDNORM;
	if (xmit_.size() < kWakeupChars && xmit_.size() < kXmitSize)
		mask |= POLLOUT | POLLWRNORM;
	return mask;
}

void SerialModel::scheduleWake(Clock::time_point at)
{
	if (wakeAt_ && *wakeAt_ <= at)
		return;
	wakeAt_ = at;
	wakeTimer_.at(at, [this] {
		wakeAt_.reset();
		wake();
	});
}

/* A VTIME or break deadline passed: let waiting callers finish, then expire what nobody claimed. */
void SerialModel::wake()
{
	auto now = Clock::now();
	bool breakEnds = false;
	for (auto *f : files_)
		if (f->breakUntil && *f->breakUntil <= now)
			breakEnds = true;
	if (breakEnds)
		setBreak(false);
	notify();
	std::optional<Clock::time_point> next;
	auto later = [&](Clock::time_point t) {
		if (!next || t < *next)
			next = t;
	};
	for (auto *f : files_) {
		if (f->vtimeDeadline && *f->vtimeDeadline <= now)
			f->vtimeDeadline.reset(); /* its read was answered otherwise (signal, O_NONBLOCK) */
		else if (f->vtimeDeadline)
			later(*f->vtimeDeadline);
		if (f->breakUntil && *f->breakUntil <= now)
			f->breakUntil.reset();
		else if (f->breakUntil)
			later(*f->breakUntil);
	}
	if (!canonical() && cc(VMIN) > 0 && cc(VTIME) > 0 && !in_.empty()) {
		auto t = lastRx_ + std::chrono::milliseconds(100 * cc(VTIME));
		if (t > now)
			later(t);
	}
	if (next)
		scheduleWake(*next);
}

/* ---------------- termios and ioctls ---------------- */

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
		uint8_t m = uart_.peek(serial::MSR);
		int v = static_cast<int>(mctrl_);
		if (m & msr::DCD)
			v |= TIOCM_CAR;
		if (m & msr::RI)
			v |= TIOCM_RNG;
		if (m & msr::DSR)
			v |= TIOCM_DSR;
		if (m & msr::CTS)
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
		return call.replyArg(static_cast<int>(xmit_.size()));
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
		return call.replyArg(static_cast<unsigned>((uart_.peek(serial::LSR) & lsr::TEMT) ? TIOCSER_TEMT : 0));
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

/* ---------------- control side ---------------- */

std::string SerialModel::info() const
{
	uint8_t m = uart_.peek(serial::MSR);
	uint8_t out = uart_.outputs();
	unsigned div = uart_.divisor() ? uart_.divisor() : 0x10000;
	uint8_t l = uart_.lcrValue();
	const char *parity = !(l & lcrb::PARITY) ? "none"
			     : (l & lcrb::SPAR)	 ? ((l & lcrb::EPAR) ? "space" : "mark")
			     : (l & lcrb::EPAR)	 ? "even"
						 : "odd";
	std::string far = far_ ? far_->describe() : "loopback";
	return fmt::format(
		"far={} peer={} dtr={} rts={} out1={} out2={} loop={} cts={} dsr={} dcd={} ri={} baud={} divisor={} "
		"data={} parity={} stop={} break={} ier={:#04x} iir={:#04x} fcr={:#04x} lcr={:#04x} mcr={:#04x} "
		"lsr={:#04x} msr={:#04x} inq={} outq={} opens={} rx={} tx={} sent={} overrun={} buf_overrun={} lost={}",
		far, far_ ? (far_->peerConnected() ? "connected" : "none") : "loopback", (out & mcr::DTR) ? 1 : 0,
		(out & mcr::RTS) ? 1 : 0, (out & mcr::OUT1) ? 1 : 0, (out & mcr::OUT2) ? 1 : 0, uart_.loop() ? 1 : 0,
		(m & msr::CTS) ? 1 : 0, (m & msr::DSR) ? 1 : 0, (m & msr::DCD) ? 1 : 0, (m & msr::RI) ? 1 : 0,
		config_.clock / (16 * div), div, uart_.wordLength(), parity, (l & lcrb::STOP) ? 2 : 1,
		uart_.breakOn() ? 1 : 0, uart_.ierValue(), uart_.peek(serial::IIR), uart_.fcrValue(), l,
		uart_.mcrValue(), uart_.peek(serial::LSR), m, inq(), xmit_.size(), opens_, icount_.rx, icount_.tx,
		farSent_, icount_.overrun, icount_.buf_overrun, far_ ? far_->lost() : 0);
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
		uint8_t bit = key == "cts"		      ? msr::CTS
			      : key == "dsr"		      ? msr::DSR
			      : (key == "dcd" || key == "cd") ? msr::DCD
			      : key == "ri"		      ? msr::RI
							      : 0;
		if (!bit || (val != "0" && val != "1")) {
			reply = fmt::format("'{}': expected cts=, dsr=, dcd= or ri= with 0 or 1", a);
			return -EINVAL;
		}
		lines = val == "1" ? (lines | bit) : (lines & static_cast<uint8_t>(~bit));
	}
	farLines_ = lines;
	uart_.setModemInputs(lines);
	service();
	notify(POLLPRI);
	reply = fmt::format("cts={} dsr={} dcd={} ri={}", (lines & msr::CTS) ? 1 : 0, (lines & msr::DSR) ? 1 : 0,
			    (lines & msr::DCD) ? 1 : 0, (lines & msr::RI) ? 1 : 0);
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

} // namespace

void registerSerialModel(ModelRegistry &registry)
{
	registry.add(
		{ "serial", "16550A UART tty: termios ioctls, modem lines, far end loopback/pty/tcp/unix",
		  "far=loopback|pty|tcp:PORT|tcp:HOST:PORT|unix:PATH  the other end of the line (default loopback)\n"
		  "clock=HZ              UART input clock; the top rate is HZ/16 (default 1843200: 115200 baud)\n"
		  "pace=baud|none        characters take their time on the wire at the set rate, or none (default "
		  "baud)\n",
		  [](ModelOptions &opts, DeviceContext &ctx) -> std::unique_ptr<Model> {
			  SerialConfig config;
			  config.farSpec = opts.string("far", "loopback");
			  config.clock =
				  static_cast<uint32_t>(opts.number("clock", 1843200, 16 * 50, 64ULL * 1000 * 1000));
			  config.paced = opts.choice("pace", "baud", { "baud", "none" }) == "baud";
			  const std::string &spec = config.farSpec;
			  if (spec == "loopback") {
				  config.far = FarKind::Loopback;
			  } else if (spec == "pty") {
				  config.far = FarKind::Pty;
			  } else if (spec.rfind("tcp:", 0) == 0) {
				  config.far = FarKind::Tcp;
				  std::string rest = spec.substr(4), host = "127.0.0.1";
				  auto colon = rest.rfind(':');
				  if (colon != std::string::npos) {
					  host = rest.substr(0, colon);
					  rest = rest.substr(colon + 1);
				  }
				  auto port = parseUnsigned(rest, 65535, 10);
				  boost::system::error_code ec;
				  config.farAddress = asio::ip::make_address(host, ec);
				  if (!port)
					  opts.fail("far", fmt::format("'{}' is not a port number", rest));
				  else if (ec)
					  opts.fail("far", fmt::format("'{}' is not an IP address", host));
				  config.farPort = static_cast<uint16_t>(port.value_or(0));
			  } else if (spec.rfind("unix:", 0) == 0 && spec.size() > 5) {
				  config.far = FarKind::Unix;
				  config.farPath = spec.substr(5);
			  } else {
				  opts.fail("far", "expected loopback, pty, tcp:PORT, tcp:HOST:PORT or unix:PATH");
			  }
			  if (!opts.error().empty())
				  return nullptr;
			  return std::make_unique<SerialModel>(ctx, std::move(config));
		  },
		  injectHelp(SerialModel::kVerbs) });
}

} // namespace devemu
