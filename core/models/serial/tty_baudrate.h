// SPDX-License-Identifier: MIT
// serial: termios speeds (the kernel's drivers/tty/tty_baudrate.c): Bnnn codes, BOTHER, encoding a rate.
#pragma once

#include <asm/termbits.h>

namespace devemu::serial {

/* tty_termios_baud_rate() */
speed_t outputBaud(const termios2 &t);
/* tty_termios_input_baud_rate() */
speed_t inputBaud(const termios2 &t);
/* tty_termios_encode_baud_rate(): a Bnnn code when within 2% of one (exact when BOTHER was asked), else BOTHER. */
void encodeBaud(termios2 &t, speed_t ibaud, speed_t obaud);

} // namespace devemu::serial
