// SPDX-License-Identifier: MIT
// Unit tests of the serial model: the 16550A register file, and the tty ABI (termios ioctls, n_tty) driven from it.
#include "harness.h"

#include "serial/uart16550.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <asm/termbits.h>
#include <linux/serial.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <chrono>

#ifndef TIOCM_LOOP
#define TIOCM_OUT1 0x2000
#define TIOCM_OUT2 0x4000
#define TIOCM_LOOP 0x8000
#endif

using namespace devemu;
namespace s = devemu::serial;

/* ---------------- the register file ---------------- */

TEST_CASE("serial 16550A: registers come out of reset with the datasheet's values")
{
	s::Uart16550 u;
	CHECK(u.read(UART_IER) == 0);
	CHECK(u.read(UART_IIR) == 0x01);
	CHECK(u.read(UART_LCR) == 0);
	CHECK(u.read(UART_MCR) == 0);
	CHECK(u.read(UART_LSR) == (UART_LSR_THRE | UART_LSR_TEMT));
	u.write(UART_SCR, 0x5a);
	CHECK(u.read(UART_SCR) == 0x5a);
}

TEST_CASE("serial 16550A: DLAB switches offsets 0 and 1 to the divisor latch")
{
	s::Uart16550 u;
	u.write(UART_LCR, UART_LCR_DLAB | 0x03);
	u.write(UART_DLL, 0x0c);
	u.write(UART_DLM, 0x01);
	CHECK(u.read(UART_DLL) == 0x0c);
	CHECK(u.read(UART_DLM) == 0x01);
	CHECK(u.divisor() == 0x10c);
	u.write(UART_LCR, 0x03);
	CHECK(u.read(UART_IER) == 0); /* IER again, untouched by the DLM write */
	CHECK(u.wordLength() == 8);
	CHECK(u.bitsPerChar() == 10);
	u.write(UART_LCR, UART_LCR_PARITY | UART_LCR_STOP | 0x02); /* 7E2 */
	CHECK(u.bitsPerChar() == 1 + 7 + 1 + 2);
}

TEST_CASE("serial 16550A: the receive FIFO holds 16 characters, then overruns "
	  "(LSR.OE, cleared by reading LSR)")
{
	s::Uart16550 u;
	u.write(UART_LCR, 0x03);
	u.write(UART_FCR, UART_FCR_ENABLE_FIFO);
	CHECK((u.read(UART_IIR) & s::kIirFifosEnabled) == s::kIirFifosEnabled);
	for (int i = 0; i < 17; i++)
		u.receive(static_cast<uint8_t>('a' + i));
	CHECK(u.rxCount() == 16);
	CHECK(u.overruns() == 1);
	uint8_t l = u.read(UART_LSR);
	CHECK((l & (UART_LSR_DR | UART_LSR_OE)) == (UART_LSR_DR | UART_LSR_OE));
	CHECK((u.read(UART_LSR) & UART_LSR_OE) == 0);
	std::string got;
	while (u.read(UART_LSR) & UART_LSR_DR)
		got += static_cast<char>(u.read(UART_RX));
	CHECK(got == "abcdefghijklmnop"); /* the 17th character was the one lost */
}

TEST_CASE("serial 16550A: without FIFOs (16450 mode) an overrun overwrites the "
	  "holding register")
{
	s::Uart16550 u;
	u.write(UART_LCR, 0x03);
	u.receive('x');
	u.receive('y');
	CHECK(u.rxCount() == 1);
	CHECK((u.read(UART_LSR) & UART_LSR_OE) != 0);
	CHECK(u.read(UART_RX) == 'y');
}

TEST_CASE("serial 16550A: received-data interrupt at the trigger level, "
	  "character timeout below it")
{
	s::Uart16550 u;
	u.write(UART_LCR, 0x03);
	u.write(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_8);
	u.write(UART_IER, UART_IER_RDI);
	for (int i = 0; i < 7; i++)
		u.receive('0');
	CHECK_FALSE(u.irq());
	u.receive('0');
	CHECK(u.irq());
	CHECK((u.read(UART_IIR) & s::kIirIdMask) == UART_IIR_RDI);
	for (int i = 0; i < 6; i++)
		u.read(UART_RX);
	CHECK_FALSE(u.irq()); /* 2 left, below the trigger */
	u.rxIdle();
	CHECK((u.read(UART_IIR) & s::kIirIdMask) == UART_IIR_RX_TIMEOUT);
	u.read(UART_RX);
	CHECK_FALSE(u.irq()); /* reading RBR clears the timeout indication */
}

TEST_CASE("serial 16550A: THRE interrupt, THRE and TEMT as the transmitter drains")
{
	s::Uart16550 u;
	u.write(UART_LCR, 0x03);
	u.write(UART_FCR, UART_FCR_ENABLE_FIFO);
	u.write(UART_IER, UART_IER_THRI);
	CHECK((u.read(UART_IIR) & s::kIirIdMask) == UART_IIR_THRI); /* enabling it with THR empty raises it */
	CHECK_FALSE(u.irq()); /* reading IIR acknowledged it */
	u.write(UART_TX, 'A'); /* straight into the shift register */
	u.write(UART_TX, 'B'); /* waits in the FIFO */
	CHECK((u.read(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT)) == 0);
	CHECK(u.shiftOut() == std::optional<uint8_t>('A'));
	CHECK((u.read(UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT)) == UART_LSR_THRE);
	CHECK((u.read(UART_IIR) & s::kIirIdMask) == UART_IIR_THRI);
	CHECK(u.shiftOut() == std::optional<uint8_t>('B'));
	CHECK((u.read(UART_LSR) & UART_LSR_TEMT) != 0);
	CHECK_FALSE(u.shiftOut().has_value());
}

TEST_CASE("serial 16550A: the word length masks what goes out and what comes in")
{
	s::Uart16550 u;
	u.write(UART_LCR, 0x02); /* 7 bits */
	u.write(UART_TX, 0xc1);
	CHECK(u.shiftOut() == std::optional<uint8_t>(0x41));
	u.receive(0xff);
	CHECK(u.read(UART_RX) == 0x7f);
}

TEST_CASE("serial 16550A: MSR deltas, trailing-edge RI, cleared by reading MSR")
{
	s::Uart16550 u;
	u.setModemInputs(UART_MSR_CTS | UART_MSR_RI);
	uint8_t m = u.read(UART_MSR);
	CHECK((m & s::kMsrLines) == (UART_MSR_CTS | UART_MSR_RI));
	CHECK((m & UART_MSR_ANY_DELTA) == UART_MSR_DCTS); /* RI rising is not an event */
	CHECK((u.read(UART_MSR) & UART_MSR_ANY_DELTA) == 0);
	u.write(UART_IER, UART_IER_MSI);
	u.setModemInputs(UART_MSR_DCD);
	CHECK(u.irq());
	CHECK((u.read(UART_IIR) & s::kIirIdMask) == UART_IIR_MSI);
	m = u.read(UART_MSR);
	CHECK((m & UART_MSR_ANY_DELTA) == (UART_MSR_DCTS | UART_MSR_TERI | UART_MSR_DDCD));
	CHECK_FALSE(u.irq());
}

TEST_CASE("serial 16550A: loop mode wires the outputs to the inputs and the "
	  "transmitter to the receiver")
{
	s::Uart16550 u;
	u.write(UART_LCR, 0x03);
	u.setModemInputs(s::kMsrLines); /* the far end's lines are disconnected in loop mode */
	u.write(UART_MCR, UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_OUT2);
	CHECK((u.read(UART_MSR) & s::kMsrLines) == (UART_MSR_CTS | UART_MSR_DCD));
	CHECK(u.outputs() == 0);
	u.write(UART_TX, 'z');
	CHECK_FALSE(u.shiftOut().has_value()); /* nothing on the wire */
	CHECK(u.read(UART_RX) == 'z');
	u.receive('w'); /* the line input is ignored */
	CHECK(u.rxCount() == 0);
}

TEST_CASE("serial 16550A: a break sets BI with a NUL character and raises the "
	  "line-status interrupt")
{
	s::Uart16550 u;
	u.write(UART_LCR, 0x03);
	u.write(UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_TRIGGER_14);
	u.write(UART_IER, UART_IER_RLSI | UART_IER_RDI);
	u.receive(0, UART_LSR_BI);
	CHECK((u.read(UART_IIR) & s::kIirIdMask) == UART_IIR_RLSI);
	uint8_t l = u.read(UART_LSR);
	CHECK((l & (UART_LSR_BI | UART_LSR_DR | UART_LSR_FIFOE)) == (UART_LSR_BI | UART_LSR_DR | UART_LSR_FIFOE));
	CHECK(u.read(UART_RX) == 0);
}

/* ---------------- the tty on top ---------------- */

namespace {

constexpr uint64_t kArg = 0x10000;

struct Tty {
	test::Harness h;
	/* fifos: the file is opened through a second window with stream FIFOs, whose driver side
	 * (the kernel shim's) the test plays: rxTake() and txPost(). */
	std::optional<LocalWindow> fifoWindow;
	test::FakeMemory mem;
	int fh;
	uint32_t rxHead = 0, txTail = 0;

	explicit Tty(ModelOptions::Pairs opts = { { "pace", "none" } }, bool fifos = false)
		: h("serial", std::move(opts))
	{
		if (fifos) {
			fifoWindow.emplace(
				*h.core_, "fifo",
				WindowGeometry{ DEVEMU_DEFAULT_QUEUE_DEPTH, DEVEMU_DEFAULT_SLOT_SIZE, 4096, 4096 },
				DEVEMU_F_STREAM);
			REQUIRE((fifoWindow->window().regs().features_accepted & DEVEMU_F_STREAM) != 0);
			h.driver_ = &fifoWindow->driver();
		}
		fh = h.open();
		REQUIRE(fh >= 0);
		mem.regions[kArg].resize(256);
	}
	template<typename T>
	int get(uint32_t cmd, T &out, int file = -1)
	{
		int r = h.ioctl(file < 0 ? fh : file, cmd, kArg, mem);
		std::memcpy(&out, mem.regions[kArg].data(), sizeof(T));
		return r;
	}
	template<typename T>
	int set(uint32_t cmd, const T &in, int file = -1)
	{
		std::memcpy(mem.regions[kArg].data(), &in, sizeof(T));
		return h.ioctl(file < 0 ? fh : file, cmd, kArg, mem);
	}
	int value(uint32_t cmd, uint64_t v) { return h.ioctl(fh, cmd, v, mem); }
	int modem()
	{
		int v = 0;
		REQUIRE(get(TIOCMGET, v) == 0);
		return v;
	}
	termios attrs()
	{
		termios t{};
		REQUIRE(get(TCGETS, t) == 0);
		return t;
	}
	/* cfmakeraw, as pyserial and stty raw -echo leave it */
	void raw(uint8_t vmin = 1, uint8_t vtime = 0)
	{
		termios t = attrs();
		t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
		t.c_oflag &= ~OPOST;
		t.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
		t.c_cc[VMIN] = vmin;
		t.c_cc[VTIME] = vtime;
		REQUIRE(set(TCSETS, t) == 0);
	}
	void settle(std::chrono::milliseconds d = std::chrono::milliseconds(30))
	{
		h.io_.restart();
		h.io_.run_for(d);
	}
	std::string inject(std::vector<std::string> args, int expect = 0)
	{
		std::string reply;
		CHECK(h.core_->inject(args, reply) == expect);
		return reply;
	}
	std::string info(const std::string &key)
	{
		std::string all = inject({ "info" });
		auto at = all.find(" " + key + "=");
		if (all.rfind(key + "=", 0) == 0)
			at = 0;
		else if (at == std::string::npos)
			return "?";
		else
			at++;
		auto start = at + key.size() + 1;
		return all.substr(start, all.find(' ', start) - start);
	}
	Window &fifo() { return fifoWindow->window(); }
	/* The driver side: what the receive FIFO holds, taken (the head moves past it). */
	std::string rxTake()
	{
		Window &w = fifo();
		auto data = w.rxFifoData();
		/* A discard by the core (a flush, a diverted read) moves the head first. */
		uint32_t discard = w.rxFifo().discard;
		uint32_t tail = loadAcquire(w.rxFifo().tail);
		if (discard - rxHead <= tail - rxHead)
			rxHead = discard;
		std::string out;
		for (; rxHead != tail; rxHead++)
			out += static_cast<char>(data[rxHead & (data.size() - 1)]);
		storeRelease(w.rxFifo().head, rxHead);
		h.core_->doorbell();
		return out;
	}
	/* The driver side: a posted write into the transmit FIFO; ring says whether to wake the core. */
	void txPost(const std::string &bytes, bool ring = true)
	{
		Window &w = fifo();
		auto data = w.txFifoData();
		for (char c : bytes)
			data[txTail++ & (data.size() - 1)] = std::byte(c);
		storeRelease(w.txFifo().tail, txTail);
		if (ring)
			h.core_->doorbell();
	}
	std::string readNow(uint32_t len = 256)
	{
		auto o = h.read(fh, len, true);
		REQUIRE(o->done);
		if (o->result < 0)
			return "<" + std::to_string(o->result) + ">";
		return test::text(o->data);
	}
	/* An ioctl whose rounds all carry memory but whose last round may wait
	 * (parks). */
	std::shared_ptr<test::Outcome> ioctlAsync(uint32_t cmd, std::span<const std::byte> in, uint32_t outLen = 0)
	{
		devemu_sqe sqe{};
		sqe.opcode = DEVEMU_OP_IOCTL;
		sqe.fh = static_cast<uint32_t>(fh);
		sqe.ioctl_cmd = cmd;
		sqe.ioctl_arg = kArg;
		sqe.len = static_cast<uint32_t>(in.size());
		sqe.out_len = outLen;
		return h.submit(sqe, in);
	}
};

} // namespace

TEST_CASE("serial tty: TCGETS gives the serial core's defaults in the kernel's "
	  "36-byte struct termios")
{
	Tty t;
	static_assert(sizeof(termios) == 36 && sizeof(termios2) == 44);
	int rounds = 0;
	termios a{};
	t.mem.regions[kArg].assign(256, std::byte{ 0xee });
	REQUIRE(t.h.ioctl(t.fh, TCGETS, kArg, t.mem, &rounds) == 0);
	std::memcpy(&a, t.mem.regions[kArg].data(), sizeof(a));
	CHECK(rounds == 2);
	CHECK(t.mem.regions[kArg][36] == std::byte{ 0xee }); /* nothing beyond the 36 bytes */
	CHECK((a.c_cflag & CBAUD) == B9600);
	CHECK((a.c_cflag & CSIZE) == CS8);
	CHECK((a.c_cflag & (CREAD | HUPCL | CLOCAL)) == (CREAD | HUPCL | CLOCAL));
	CHECK(a.c_iflag == (ICRNL | IXON));
	CHECK(a.c_oflag == (OPOST | ONLCR));
	CHECK((a.c_lflag & (ICANON | ECHO | ISIG)) == (ICANON | ECHO | ISIG));
	CHECK(a.c_cc[VINTR] == 3);
	CHECK(a.c_cc[VEOF] == 4);
	CHECK(a.c_cc[VMIN] == 1);
	CHECK(t.info("divisor") == "12");
	CHECK(t.info("lcr") == "0x13"); /* 8N1; the 8250 driver sets EPAR whenever PARODD is clear */
}

TEST_CASE("serial tty: the speed set with TCSETS programs the divisor latch, "
	  "and TCGETS reads it back")
{
	Tty t;
	termios a = t.attrs();
	a.c_cflag = (a.c_cflag & ~CBAUD) | B115200;
	REQUIRE(t.set(TCSETS, a) == 0);
	CHECK((t.attrs().c_cflag & CBAUD) == B115200);
	CHECK(t.info("divisor") == "1");
	CHECK(t.info("baud") == "115200");

	a.c_cflag = (a.c_cflag & ~(CBAUD | CSIZE | PARODD)) | B1200 | CS7 | PARENB | CSTOPB;
	REQUIRE(t.set(TCSETSW, a) == 0);
	CHECK(t.info("divisor") == "96");
	CHECK(t.info("data") == "7");
	CHECK(t.info("parity") == "even");
	CHECK(t.info("stop") == "2");
	CHECK(t.info("fcr") == "0x01"); /* below 2400 baud the driver uses a trigger level of 1 */
	termios2 b{};
	REQUIRE(t.get(TCGETS2, b) == 0);
	CHECK(b.c_ospeed == 1200);
	CHECK(b.c_ispeed == 1200);
}

TEST_CASE("serial tty: an arbitrary speed (BOTHER) is rounded to what the "
	  "divisor gives")
{
	Tty t;
	termios2 b{};
	REQUIRE(t.get(TCGETS2, b) == 0);
	b.c_cflag = (b.c_cflag & ~CBAUD) | BOTHER;
	b.c_ispeed = b.c_ospeed = 1234;
	REQUIRE(t.set(TCSETS2, b) == 0);
	REQUIRE(t.get(TCGETS2, b) == 0);
	CHECK(t.info("divisor") == "93");
	CHECK((b.c_cflag & CBAUD) == BOTHER);
	CHECK(b.c_ospeed == 1238); /* 115200 / 93 */

	b.c_cflag = (b.c_cflag & ~CBAUD) | BOTHER;
	b.c_ispeed = b.c_ospeed = 100000;
	REQUIRE(t.set(TCSETS2, b) == 0);
	REQUIRE(t.get(TCGETS2, b) == 0);
	CHECK((b.c_cflag & CBAUD) == B115200); /* divisor 1: exactly a standard rate again */
	CHECK(b.c_ospeed == 115200);
}

TEST_CASE("serial tty: a speed above the UART's clock/16 is accepted and the "
	  "old speed kept, as the 8250 driver does")
{
	Tty t;
	termios a = t.attrs();
	a.c_cflag = (a.c_cflag & ~CBAUD) | B57600;
	REQUIRE(t.set(TCSETS, a) == 0);
	a.c_cflag = (a.c_cflag & ~CBAUD) | B460800;
	CHECK(t.set(TCSETS, a) == 0);
	CHECK((t.attrs().c_cflag & CBAUD) == B57600);
	CHECK(t.info("divisor") == "2");

	Tty fast({ { "pace", "none" }, { "clock", "14745600" } }); /* an 8x crystal: 921600 baud top */
	a = fast.attrs();
	a.c_cflag = (a.c_cflag & ~CBAUD) | B460800;
	REQUIRE(fast.set(TCSETS, a) == 0);
	CHECK((fast.attrs().c_cflag & CBAUD) == B460800);
	CHECK(fast.info("divisor") == "2");
}

TEST_CASE("serial tty: B0 hangs up the modem lines, a speed raises them again")
{
	Tty t;
	CHECK((t.modem() & (TIOCM_DTR | TIOCM_RTS)) == (TIOCM_DTR | TIOCM_RTS));
	termios a = t.attrs();
	a.c_cflag &= ~CBAUD;
	REQUIRE(t.set(TCSETS, a) == 0);
	CHECK((t.attrs().c_cflag & CBAUD) == B0);
	CHECK((t.modem() & (TIOCM_DTR | TIOCM_RTS)) == 0);
	CHECK(t.info("dtr") == "0");
	a.c_cflag |= B19200;
	REQUIRE(t.set(TCSETS, a) == 0);
	CHECK((t.modem() & (TIOCM_DTR | TIOCM_RTS)) == (TIOCM_DTR | TIOCM_RTS));
	CHECK(t.info("divisor") == "6");
}

TEST_CASE("serial tty: TIOCMGET reflects MCR and MSR; TIOCMSET/BIS/BIC change "
	  "only what the UART has")
{
	Tty t;
	CHECK(t.modem() == (TIOCM_DTR | TIOCM_RTS | TIOCM_OUT2 | TIOCM_CTS | TIOCM_DSR | TIOCM_CAR));
	t.inject({ "modem", "cts=0", "dsr=0", "dcd=0", "ri=1" });
	CHECK(t.modem() == (TIOCM_DTR | TIOCM_RTS | TIOCM_OUT2 | TIOCM_RNG));
	CHECK(t.info("msr") == "0x40");

	int bits = TIOCM_DTR;
	REQUIRE(t.set(TIOCMBIC, bits) == 0);
	CHECK(t.info("dtr") == "0");
	CHECK(t.info("rts") == "1");
	CHECK(t.info("mcr") == "0x0a");
	bits = TIOCM_DTR | TIOCM_LE | TIOCM_CTS | TIOCM_ST; /* LE, CTS, ST: not outputs of this UART */
	REQUIRE(t.set(TIOCMSET, bits) == 0);
	CHECK((t.modem() & (TIOCM_DTR | TIOCM_RTS | TIOCM_LE | TIOCM_ST | TIOCM_OUT2)) == TIOCM_DTR);
	bits = TIOCM_RTS | TIOCM_OUT2;
	REQUIRE(t.set(TIOCMBIS, bits) == 0);
	CHECK(t.info("mcr") == "0x0b");
}

TEST_CASE("serial tty: TIOCM_LOOP puts the UART in loop mode: MSR mirrors MCR "
	  "and writes come back inside the chip")
{
	Tty t;
	t.raw();
	int bits = TIOCM_LOOP;
	REQUIRE(t.set(TIOCMBIS, bits) == 0);
	bits = TIOCM_DTR | TIOCM_OUT2 | TIOCM_LOOP; /* RTS low: CTS reads low */
	REQUIRE(t.set(TIOCMSET, bits) == 0);
	int m = t.modem();
	CHECK((m & (TIOCM_CTS | TIOCM_DSR | TIOCM_CAR | TIOCM_RNG)) == (TIOCM_DSR | TIOCM_CAR));
	CHECK(t.info("loop") == "1");
	t.h.write(t.fh, test::bytes("ping"));
	t.settle();
	CHECK(t.readNow() == "ping");
	CHECK(t.info("sent") == "0"); /* nothing reached the far end */
}

TEST_CASE("serial tty: raw mode over the loopback far end returns what was written")
{
	Tty t(ModelOptions::Pairs{}); /* paced at 9600 baud: about 1 ms per character */
	t.raw();
	auto w = t.h.write(t.fh, test::bytes("hello, line"));
	REQUIRE(w->done);
	CHECK(w->result == 11);
	auto r = t.h.read(t.fh, 64);
	CHECK_FALSE(r->done); /* nothing has crossed the wire yet */
	std::string got;
	for (int i = 0; i < 100 && got.size() < 11; i++) {
		t.settle(std::chrono::milliseconds(5));
		if (r->done) {
			got += test::text(r->data);
			r = t.h.read(t.fh, 64);
		}
	}
	CHECK(got == "hello, line");
	CHECK(t.info("sent") == "11");
}

TEST_CASE("serial tty: output processing (OPOST/ONLCR) and input processing "
	  "(ICRNL) on the wire")
{
	Tty t;
	termios a = t.attrs();
	a.c_lflag = 0; /* non-canonical, no echo */
	a.c_iflag = 0;
	a.c_oflag = OPOST | ONLCR;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.h.write(t.fh, test::bytes("a\nb"));
	t.settle();
	CHECK(t.readNow() == "a\r\nb");
	a.c_iflag = ICRNL;
	a.c_oflag = 0;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "data", "x\\ry" });
	t.settle();
	CHECK(t.readNow() == "x\ny");
}

TEST_CASE("serial tty: canonical mode returns lines, edits with ERASE/KILL, "
	  "and EOF ends a read")
{
	Tty t;
	termios a = t.attrs();
	a.c_lflag &= ~ECHO; /* a loopback plug would echo our echo forever */
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "data", "partial" });
	t.settle();
	CHECK(t.readNow() == "<-11>"); /* no complete line yet */
	int n = -1;
	REQUIRE(t.get(TIOCINQ, n) == 0);
	CHECK(n == 0);
	t.inject({ "data", "\\x7fX\\rnext\\x15two\\n" }); /* ERASE, CR->NL, KILL */
	t.settle();
	REQUIRE(t.get(FIONREAD, n) == 0);
	CHECK(n == 12);
	CHECK(t.readNow() == "partiaX\n");
	CHECK(t.readNow() == "two\n");
	t.inject({ "data", "end\\x04\\x04" });
	t.settle();
	CHECK(t.readNow() == "end");
	CHECK(t.readNow() == ""); /* an EOF on an empty line: read returns 0 */
	CHECK(t.readNow() == "<-11>");
}

TEST_CASE("serial tty: echo goes to the far end through output processing")
{
	Tty t({ { "pace", "none" }, { "far", "loopback" } });
	/* Echo on, but the returning echo is taken raw (no second echo): ECHO, ICANON
	 * off on the way back is impossible on one port, so check the transmit side
	 * instead: the counter of characters sent to the far end. */
	termios a = t.attrs();
	a.c_lflag = ICANON | ECHO | ECHOCTL;
	a.c_iflag = 0;
	a.c_oflag = OPOST | ONLCR;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "data", "\\x01" }); /* ^A echoes as two characters */
	t.settle(std::chrono::milliseconds(5));
	CHECK(std::stoul(t.info("tx")) >= 2);
	/* Stop the ping-pong: no echo any more, discard what circulates. */
	a.c_lflag = 0;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.settle();
	REQUIRE(t.value(TCFLSH, TCIOFLUSH) == 0);
}

TEST_CASE("serial tty: VMIN/VTIME in raw mode")
{
	Tty t;
	t.raw(0, 0);
	CHECK(t.readNow() == ""); /* VMIN=0 VTIME=0: returns 0 at once */
	auto r = t.h.read(t.fh, 16); /* a blocking read: still 0 at once */
	REQUIRE(r->done);
	CHECK(r->result == 0);

	t.raw(0, 2); /* wait up to 0.2 s for the first byte */
	r = t.h.read(t.fh, 16);
	CHECK_FALSE(r->done);
	t.settle(std::chrono::milliseconds(100));
	CHECK_FALSE(r->done);
	t.settle(std::chrono::milliseconds(250));
	REQUIRE(r->done);
	CHECK(r->result == 0);
	r = t.h.read(t.fh, 16);
	t.inject({ "data", "q" });
	t.settle(std::chrono::milliseconds(20));
	REQUIRE(r->done);
	CHECK(test::text(r->data) == "q");

	t.raw(3, 0); /* three bytes or nothing */
	r = t.h.read(t.fh, 16);
	t.inject({ "data", "ab" });
	t.settle();
	CHECK_FALSE(r->done);
	t.inject({ "data", "c" });
	t.settle();
	REQUIRE(r->done);
	CHECK(test::text(r->data) == "abc");

	t.raw(5, 1); /* inter-byte timer: 0.1 s after the last byte */
	r = t.h.read(t.fh, 16);
	t.inject({ "data", "xy" });
	t.settle(std::chrono::milliseconds(30));
	CHECK_FALSE(r->done);
	t.settle(std::chrono::milliseconds(200));
	REQUIRE(r->done);
	CHECK(test::text(r->data) == "xy");
}

TEST_CASE("serial tty: O_NONBLOCK reads of an empty line say EAGAIN; poll "
	  "follows the buffers")
{
	Tty t;
	t.raw();
	CHECK(t.readNow() == "<-11>");
	CHECK(t.h.poll(t.fh) == (POLLOUT | POLLWRNORM));
	t.inject({ "data", "z" });
	t.settle();
	CHECK(t.h.poll(t.fh) == (POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM));
	t.raw(4, 0); /* with VTIME=0 poll waits for VMIN bytes */
	CHECK((t.h.poll(t.fh) & POLLIN) == 0);
}

TEST_CASE("serial tty: TCFLSH, TCXONC, TIOCOUTQ and software flow control")
{
	Tty t;
	t.raw();
	t.inject({ "data", "junk" });
	t.settle();
	CHECK(t.value(TCFLSH, 7) == -EINVAL);
	REQUIRE(t.value(TCFLSH, TCIFLUSH) == 0);
	CHECK(t.readNow() == "<-11>");

	CHECK(t.value(TCXONC, 9) == -EINVAL);
	REQUIRE(t.value(TCXONC, TCOOFF) == 0);
	t.h.write(t.fh, test::bytes("held"));
	t.settle();
	int n = 0;
	REQUIRE(t.get(TIOCOUTQ, n) == 0);
	CHECK(n == 4);
	REQUIRE(t.value(TCXONC, TCOON) == 0);
	t.settle();
	REQUIRE(t.get(TIOCOUTQ, n) == 0);
	CHECK(n == 0);
	CHECK(t.readNow() == "held");

	termios a = t.attrs();
	a.c_iflag |= IXON;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "data", "\\x13" }); /* STOP from the far end */
	t.settle();
	t.h.write(t.fh, test::bytes("wait"));
	t.settle();
	REQUIRE(t.get(TIOCOUTQ, n) == 0);
	CHECK(n == 4);
	t.inject({ "data", "\\x11" }); /* START */
	t.settle();
	CHECK(t.readNow() == "wait");
}

TEST_CASE("serial tty: a break from the far end reads as NUL, \\377 \\0 \\0 "
	  "with PARMRK, and is counted")
{
	Tty t;
	t.raw();
	t.inject({ "break" });
	t.settle();
	CHECK(t.readNow() == std::string(1, '\0'));
	termios a = t.attrs();
	a.c_iflag |= PARMRK;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "break" });
	t.settle();
	CHECK(t.readNow() == std::string("\377\0\0", 3));
	a.c_iflag |= IGNBRK;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "break" });
	t.settle();
	CHECK(t.readNow() == "<-11>");
	serial_icounter_struct ic{};
	REQUIRE(t.get(TIOCGICOUNT, ic) == 0);
	CHECK(ic.brk == 3);
}

TEST_CASE("serial tty: TCSBRK waits for the transmitter, sends a break that "
	  "the loopback plug brings back")
{
	Tty t(ModelOptions::Pairs{}); /* paced */
	t.raw();
	t.h.write(t.fh, test::bytes("abc"));
	auto drain = t.ioctlAsync(TCSBRK, {}, 0); /* tcdrain: TCSBRK 1 */
	(void)drain;
	devemu_sqe sqe{};
	sqe.opcode = DEVEMU_OP_IOCTL;
	sqe.fh = static_cast<uint32_t>(t.fh);
	sqe.ioctl_cmd = TCSBRK;
	sqe.ioctl_arg = 0; /* tcsendbreak */
	auto brk = t.h.submit(sqe);
	CHECK_FALSE(brk->done);
	t.settle(std::chrono::milliseconds(100));
	CHECK_FALSE(brk->done); /* 250 ms of break */
	for (int i = 0; i < 40 && !brk->done; i++)
		t.settle(std::chrono::milliseconds(20));
	REQUIRE(brk->done);
	CHECK(brk->result == 0);
	t.settle(std::chrono::milliseconds(20));
	CHECK(t.readNow() == std::string("abc\0", 4));
}

TEST_CASE("serial tty: TCSETSW waits until what was written has left the UART")
{
	Tty t(ModelOptions::Pairs{}); /* 9600 baud */
	t.raw();
	t.h.write(t.fh, test::bytes("0123456789"));
	termios a = t.attrs();
	a.c_cflag = (a.c_cflag & ~CBAUD) | B2400;
	auto in = std::as_bytes(std::span(&a, 1));
	auto o = t.ioctlAsync(TCSETSW, in);
	CHECK_FALSE(o->done);
	for (int i = 0; i < 100 && !o->done; i++)
		t.settle(std::chrono::milliseconds(5));
	REQUIRE(o->done);
	CHECK(o->result == 0);
	CHECK(t.info("divisor") == "48");
	CHECK(t.info("outq") == "0");
}

TEST_CASE("serial tty: bad pointers are EFAULT, unknown ioctls ENOTTY, and the "
	  "device keeps serving")
{
	Tty t;
	CHECK(t.h.ioctl(t.fh, TCGETS, 0xdead0000, t.mem) == -EFAULT);
	CHECK(t.h.ioctl(t.fh, TCSETS, 0xdead0000, t.mem) == -EFAULT);
	CHECK(t.h.ioctl(t.fh, TIOCMGET, 0xdead0000, t.mem) == -EFAULT);
	CHECK(t.h.ioctl(t.fh, _IOR('T', 0x77, int), kArg, t.mem) == -ENOTTY);
	CHECK(t.h.ioctl(t.fh, TIOCGPGRP, kArg, t.mem) == -ENOTTY); /* nobody's controlling tty */
	int ld = 5;
	CHECK(t.set(TIOCSETD, ld) == -EINVAL);
	CHECK((t.attrs().c_cflag & CBAUD) == B9600);
	/* A restricted (FUSE) driver cannot carry TCGETS: ENOTTY, as the README says.
	 */
	auto o = t.h.restrictedIoctl(t.fh, TCGETS, {}, 0);
	REQUIRE(o->done);
	CHECK(o->result == -ENOTTY);
}

TEST_CASE("serial tty: TIOCGSERIAL describes a 16550A; TIOCGWINSZ/TIOCSWINSZ "
	  "keep a window size")
{
	Tty t;
	serial_struct ss{};
	REQUIRE(t.get(TIOCGSERIAL, ss) == 0);
	CHECK(ss.type == PORT_16550A);
	CHECK(ss.xmit_fifo_size == 16);
	CHECK(ss.baud_base == 115200);
	winsize w{};
	REQUIRE(t.get(TIOCGWINSZ, w) == 0);
	CHECK(w.ws_row == 0);
	w.ws_row = 24;
	w.ws_col = 80;
	REQUIRE(t.set(TIOCSWINSZ, w) == 0);
	winsize back{};
	REQUIRE(t.get(TIOCGWINSZ, back) == 0);
	CHECK(back.ws_col == 80);
	unsigned lsrv = 99;
	REQUIRE(t.get(TIOCSERGETLSR, lsrv) == 0);
	CHECK(lsrv == TIOCSER_TEMT);
}

TEST_CASE("serial tty: TIOCEXCL refuses further opens by non-root users with EBUSY")
{
	Tty t;
	REQUIRE(t.value(TIOCEXCL, 0) == 0);
	int excl = 0;
	REQUIRE(t.get(TIOCGEXCL, excl) == 0);
	CHECK(excl == 1);
	devemu_sqe sqe{};
	sqe.opcode = DEVEMU_OP_OPEN;
	sqe.uid = 1000;
	auto o = t.h.submit(sqe);
	REQUIRE(o->done);
	CHECK(o->result == -EBUSY);
	CHECK(t.h.open() >= 0); /* root may */
	REQUIRE(t.value(TIOCNXCL, 0) == 0);
	o = t.h.submit(sqe);
	CHECK(o->result >= 0);
}

TEST_CASE("serial tty: losing carrier without CLOCAL hangs up the open files")
{
	Tty t;
	t.raw();
	termios a = t.attrs();
	a.c_cflag &= ~CLOCAL;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "modem", "dcd=0" });
	CHECK(t.readNow() == "");
	auto w = t.h.write(t.fh, test::bytes("x"));
	CHECK(w->result == -EIO);
	CHECK((t.h.poll(t.fh) & POLLHUP) != 0);
	serial_icounter_struct ic{};
	CHECK(t.get(TIOCGICOUNT, ic) == -EIO);
	int fresh = t.h.open();
	CHECK(t.get(TIOCGICOUNT, ic, fresh) == 0);
	CHECK(ic.dcd == 1);
}

TEST_CASE("serial tty: CRTSCTS holds the transmitter while the far end drops CTS")
{
	Tty t;
	t.raw();
	termios a = t.attrs();
	a.c_cflag |= CRTSCTS;
	REQUIRE(t.set(TCSETS, a) == 0);
	t.inject({ "modem", "cts=0" });
	t.h.write(t.fh, test::bytes("rts"));
	t.settle();
	CHECK(t.info("outq") == "3");
	t.inject({ "modem", "cts=1" });
	t.settle();
	CHECK(t.readNow() == "rts");
	serial_icounter_struct ic{};
	REQUIRE(t.get(TIOCGICOUNT, ic) == 0);
	CHECK(ic.cts == 2);
}

TEST_CASE("serial tty: options and inject verbs are checked")
{
	ModelOptions bad("t", "serial", { { "far", "serial-cable" } });
	auto *info = ModelRegistry::builtin().find("serial");
	REQUIRE(info);
	asio::io_context io;
	Strand strand(io.get_executor());
	Window w;
	REQUIRE(Window::create({}, "t", 0, w) == 0);
	DeviceCore core(strand, "t", w);
	CHECK(info->factory(bad, core) == nullptr);
	CHECK(bad.error().find("far") != std::string::npos);
	ModelOptions port("t", "serial", { { "far", "tcp:99999" } });
	CHECK(info->factory(port, core) == nullptr);
	CHECK_FALSE(port.error().empty());

	Tty t;
	t.inject({ "modem", "cts=2" }, -EINVAL);
	t.inject({ "hex", "6" }, -EINVAL);
	t.inject({ "launch" }, -EINVAL);
	CHECK(t.info("far") == "loopback");
}

TEST_CASE("serial tty: a tcp far end exchanges bytes with a connected client "
	  "both ways")
{
	Tty t({ { "pace", "none" }, { "far", "tcp:0" } });
	std::string far = t.info("far");
	REQUIRE(far.rfind("tcp:127.0.0.1:", 0) == 0);
	uint16_t port = static_cast<uint16_t>(std::stoul(far.substr(far.rfind(':') + 1)));
	t.raw();
	asio::ip::tcp::socket client(t.h.io_);
	client.connect({ asio::ip::make_address("127.0.0.1"), port });
	t.settle();
	CHECK(t.info("peer") == "connected");
	asio::write(client, asio::buffer(std::string("from far")));
	t.settle();
	CHECK(t.readNow() == "from far");
	t.h.write(t.fh, test::bytes("to far"));
	t.settle();
	std::array<char, 64> buf{};
	client.non_blocking(true);
	boost::system::error_code ec;
	size_t n = client.read_some(asio::buffer(buf), ec);
	CHECK(std::string(buf.data(), n) == "to far");
}

TEST_CASE("serial tty: a burst from the far end reaches a canonical, echoing reader in order")
{
	Tty t({ { "pace", "none" }, { "far", "tcp:0" } }); /* the default termios: ICANON, ECHO, ONLCR */
	std::string far = t.info("far");
	uint16_t port = static_cast<uint16_t>(std::stoul(far.substr(far.rfind(':') + 1)));
	asio::ip::tcp::socket client(t.h.io_);
	client.connect({ asio::ip::make_address("127.0.0.1"), port });
	t.settle();
	/* More than the receive FIFO's trigger level: each echo restarts the transmitter mid-burst. */
	asio::write(client, asio::buffer(std::string("from-far-start\nx\n")));
	t.settle();
	CHECK(t.readNow() == "from-far-start\n");
	CHECK(t.readNow() == "x\n");
	std::array<char, 64> buf{};
	client.non_blocking(true);
	boost::system::error_code ec;
	size_t n = client.read_some(asio::buffer(buf), ec);
	CHECK(std::string(buf.data(), n) == "from-far-start\r\nx\r\n");
}

/* ---------------- through the kernel shim's stream FIFOs ---------------- */

TEST_CASE("serial tty over stream FIFOs: raw reads and writes move through them, at the line's pace")
{
	Tty t({ { "pace", "none" } }, true);
	/* Power-on termios is canonical: reads come by request, writes stream. */
	CHECK(t.fifo().rxFifo().divert == 1);
	CHECK(t.fifo().txFifo().divert == 0);
	t.raw();
	CHECK(t.fifo().rxFifo().divert == 0);
	/* Written into the transmit FIFO, sent, looped back by the plug into the receive FIFO. */
	t.txPost("hello\n");
	t.settle();
	CHECK(t.rxTake() == "hello\n"); /* raw: no ONLCR */
	t.inject({ "data", "from far" });
	t.settle();
	CHECK(t.rxTake() == "from far");
	/* The line keeps its pace: at 9600 baud 8N1 a character takes about a millisecond. */
	Tty slow({ { "pace", "baud" } }, true);
	slow.raw();
	slow.txPost("0123456789");
	slow.settle(std::chrono::milliseconds(4));
	std::string early = slow.rxTake();
	CHECK(early.size() < 8);
	slow.settle(std::chrono::milliseconds(40));
	CHECK(early + slow.rxTake() == "0123456789");
}

TEST_CASE("serial tty over stream FIFOs: canonical mode and VMIN/VTIME divert reads to the line discipline, "
	  "pending FIFO bytes first")
{
	Tty t({ { "pace", "none" } }, true);
	t.raw();
	t.inject({ "data", "xy" });
	t.settle();
	termios a = t.attrs();
	a.c_lflag |= ICANON;
	REQUIRE(t.set(TCSETS, a) == 0);
	CHECK(t.fifo().rxFifo().divert == 1);
	/* What waited in the receive FIFO is one pending read, as n_tty makes buffered raw input one line. */
	CHECK(t.readNow() == "xy");
	CHECK(t.fifo().rxFifo().discard == t.fifo().rxFifo().tail); /* the driver drops what the core took */
	t.inject({ "data", "one\ntwo\n" });
	t.settle();
	CHECK(t.rxTake() == ""); /* nothing streamed while canonical */
	CHECK(t.readNow() == "one\n");
	/* Readiness of a diverted direction is the model's: a completed line sets POLLIN in the shadow. */
	CHECK((seqlockRead(t.fifo().fileShadow(static_cast<uint32_t>(t.fh))).revents & POLLIN) != 0);
	CHECK(t.readNow() == "two\n");
	t.raw(0, 5); /* VMIN 0, VTIME 5: a read waits half a second for a first byte */
	CHECK(t.fifo().rxFifo().divert == 1);
	t.raw(2, 0); /* VMIN 2: a read waits for two bytes */
	CHECK(t.fifo().rxFifo().divert == 1);
	t.raw(0, 0); /* pyserial's polling read: what is there, 0 at once when empty, in the kernel too */
	CHECK(t.fifo().rxFifo().divert == 0);
	CHECK(t.fifo().rxFifo().nowait == 1);
	CHECK(t.readNow() == "");
	auto blocking = t.h.read(static_cast<uint32_t>(t.fh), 16);
	CHECK(blocking->done);
	CHECK(blocking->result == 0);
	t.raw(1, 0);
	CHECK(t.fifo().rxFifo().divert == 0);
	CHECK(t.fifo().rxFifo().nowait == 0);
	t.inject({ "data", "z" });
	t.settle();
	/* Streaming again: readiness is the driver's (the FIFO's fill), not in the shadow. */
	CHECK((seqlockRead(t.fifo().fileShadow(static_cast<uint32_t>(t.fh))).revents & POLLIN) == 0);
	CHECK(t.rxTake() == "z");
}

TEST_CASE("serial tty over stream FIFOs: TIOCOUTQ and tcflush count and drop what waits in the FIFOs")
{
	Tty t({ { "pace", "baud" } }, true); /* 9600 baud: written bytes wait */
	t.raw();
	t.txPost(std::string(4096, 'a'));
	t.txPost(std::string(1000, 'b'), false); /* posted, the core not woken: still in the FIFO */
	int outq = 0;
	REQUIRE(t.get(TIOCOUTQ, outq) == 0);
	CHECK(outq > 4096); /* the 4 KiB transmit buffer and the FIFO's bytes beyond it */
	CHECK(outq <= 5096);
	REQUIRE(t.value(TCFLSH, TCOFLUSH) == 0);
	REQUIRE(t.get(TIOCOUTQ, outq) == 0);
	CHECK(outq == 0);
	CHECK(t.fifo().txFifo().head == t.fifo().txFifo().tail);

	Tty r({ { "pace", "none" } }, true);
	r.raw();
	r.inject({ "data", "stale" });
	r.settle();
	REQUIRE(r.value(TCFLSH, TCIFLUSH) == 0);
	CHECK(r.rxTake() == ""); /* the driver dropped them at the core's discard */
}

TEST_CASE("serial tty over stream FIFOs: a hang-up diverts both directions until its files are closed")
{
	Tty t({ { "pace", "none" } }, true);
	t.raw();
	termios a = t.attrs();
	a.c_cflag &= ~CLOCAL;
	REQUIRE(t.set(TCSETS, a) == 0);
	int second = t.h.open();
	t.inject({ "modem", "dcd=0" });
	CHECK(t.fifo().rxFifo().divert == 1);
	CHECK(t.fifo().txFifo().divert == 1);
	CHECK(t.readNow() == "");
	CHECK(t.h.write(t.fh, test::bytes("x"))->result == -EIO);
	t.h.release(static_cast<uint32_t>(second));
	CHECK(t.fifo().txFifo().divert == 1); /* the first file is still hung up */
	t.h.release(static_cast<uint32_t>(t.fh));
	CHECK(t.fifo().rxFifo().divert == 0);
	CHECK(t.fifo().txFifo().divert == 0);
}

TEST_CASE(
	"serial tty over stream FIFOs: XON/XOFF over its own loopback plug loses nothing to a reader that falls behind")
{
	Tty t({ { "pace", "none" } }, true);
	t.raw();
	termios a = t.attrs();
	a.c_iflag |= IXON | IXOFF;
	REQUIRE(t.set(TCSETS, a) == 0);
	/* The writer floods; the reader takes what arrived only every 16th round, so the input buffer fills,
	 * our STOP comes back to our own receiver and stops the transmitter, and the START after the reader's
	 * take restarts it from inside the receive path. */
	std::string posted, got;
	for (int round = 0; round < 400; round++) {
		uint32_t room = 4096 - (t.txTail - loadAcquire(t.fifo().txFifo().head));
		std::string chunk;
		for (uint32_t i = 0; i < std::min<uint32_t>(room, 700); i++)
			chunk += static_cast<char>('a' + (posted.size() + i) % 26);
		t.txPost(chunk);
		posted += chunk;
		t.settle(std::chrono::milliseconds(1));
		if (round % 16 == 15)
			got += t.rxTake();
	}
	for (int i = 0; i < 200 && got.size() < posted.size(); i++) {
		t.settle(std::chrono::milliseconds(2));
		got += t.rxTake();
	}
	CHECK(posted.size() > 40000);
	size_t same = static_cast<size_t>(std::mismatch(got.begin(), got.end(), posted.begin(), posted.end()).first -
					  got.begin());
	CHECK(same == posted.size()); /* every byte, in order */
	CHECK(got.size() == posted.size());
	CHECK(t.info("tx_dropped") == "0");
}
