// SPDX-License-Identifier: MIT
// serial: termios speeds: the Bnnn table, the input and output rates of a termios2, and their encoding.
#include "tty_baudrate.h"

#include <array>
#include <cstddef>

namespace devemu::serial {

namespace {

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

} // namespace

speed_t outputBaud(const termios2 &t)
{
	return codeToBaud(t.c_cflag & CBAUD, t.c_ospeed);
}

speed_t inputBaud(const termios2 &t)
{
	tcflag_t cbaud = (t.c_cflag >> IBSHIFT) & CBAUD;
	if (cbaud == B0)
		return outputBaud(t);
	return codeToBaud(cbaud, t.c_ispeed);
}

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

} // namespace devemu::serial
