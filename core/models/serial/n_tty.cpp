// SPDX-License-Identifier: MIT
// serial: the n_tty line discipline: input processing, canonical lines and editing, echo, output processing, read/write/poll.
#include "serial_port.h"

#include <fmt/core.h>

#include <poll.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace devemu::serial {

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
	ctx_.discardStream(); /* unread bytes already in the receive FIFO */
	in_.clear();
	delims_.clear();
	committed_ = 0;
	lnext_ = false;
	checkThrottle();
	notify();
}

void SerialModel::flushOutput()
{
	ctx_.discardStreamTx(); /* written bytes still in the transmit FIFO */
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
	updateDivert();
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
		n = takeRaw(out);
	}
	checkThrottle();
	notify(); /* readiness changed: republish the poll shadow (the kernel shim answers poll from it) */
	return static_cast<ssize_t>(n);
}

ssize_t SerialModel::write(OpenFile &f, std::span<const std::byte> in)
{
	if (f.stateAs<SerialFile>().hungUp)
		return -EIO;
	size_t done = consume(in);
	return done ? static_cast<ssize_t>(done) : -EAGAIN;
}

/* Non-canonical: takes what the input buffer holds, up to out's size. */
size_t SerialModel::takeRaw(std::span<std::byte> out)
{
	size_t n = std::min(in_.size(), out.size());
	std::copy_n(in_.begin(), n, reinterpret_cast<uint8_t *>(out.data()));
	in_.erase(in_.begin(), in_.begin() + static_cast<ptrdiff_t>(n));
	committed_ = in_.size();
	return n;
}

/* The raw read (VMIN 1, VTIME 0) of whatever is there, for the receive FIFO. */
size_t SerialModel::produce(std::span<std::byte> out)
{
	size_t n = takeRaw(out);
	if (!n)
		return 0;
	checkThrottle();
	notify();
	return n;
}

/* Written bytes from the transmit FIFO, through output processing, as far as the buffer has room. */
size_t SerialModel::consume(std::span<const std::byte> in)
{
	size_t done = 0;
	while (done < in.size() && outputChar(static_cast<uint8_t>(in[done]), false))
		done++;
	if (done) {
		startTx();
		notify();
	}
	return done;
}

void SerialModel::updateDivert()
{
	bool hungUp = std::any_of(files_.begin(), files_.end(), [](const SerialFile *f) { return f->hungUp; });
	/* VMIN 1: what is there, else wait; VMIN 0 (VTIME 0): what is there, else 0 at once. */
	bool fifoRead = !canonical() && cc(VMIN) <= 1 && cc(VTIME) == 0;
	ctx_.divertStream(!fifoRead || hungUp, hungUp);
	ctx_.streamPollingReads(cc(VMIN) == 0);
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

} // namespace devemu::serial
