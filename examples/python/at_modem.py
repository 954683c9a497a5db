# SPDX-License-Identifier: MIT
"""An AT-command modem at the far end of devemu's UART.

    devemud --device ttyMODEM0=serial,far=python:examples/python/at_modem.py:AtModem

or, in a test, devemu.device("serial", far=AtModem). A program opens /dev/ttyMODEM0 as it would a
USB modem: it sends AT commands at the line's speed, reads the answers, sees carrier detect
(DCD) rise on CONNECT and fall on hang-up, and is hung up on when it drops DTR.

Commands: AT, ATE0/ATE1 (echo), ATI (identity), ATZ (reset), AT+CSQ (signal quality),
AT+GMI/+GMM (maker, model), ATD<number> (dial: CONNECT after 0.2 s, then online: the "remote"
echoes what the program sends until it sends +++), ATH (hang up). Lines not starting with AT
are ignored, as real modems do (so a tty's own echo of our answers does no harm).
"""


class AtModem:
    IDENTITY = "devemu AT modem 1.0"

    def __init__(self, line):
        self.line = line
        self.reset()
        self.online = False
        self.plus = 0
        self.speed = 9600
        line.set_modem(cts=True, dsr=True, dcd=False, ri=False)

    def reset(self):
        # Echo off: the profile a host that sends ATE0 first would have saved (ATE1 turns it on).
        self.echo = False
        self.buffer = b""
        self.dialing = None

    # -- what the UART's far end gets -------------------------------------------------------

    def received(self, data):
        if self.online:
            self._online_data(data)
            return
        if self.echo:
            self.line.send(data)
        self.buffer += data
        while b"\r" in self.buffer:
            command, _, self.buffer = self.buffer.partition(b"\r")
            command = command.strip(b"\n ").decode("ascii", "replace")
            if command[:2].upper() == "AT":
                self._command(command[2:])

    def modem_control(self, dtr, rts):
        # &D2: dropping DTR hangs up.
        if not dtr and (self.online or self.dialing):
            self._hang_up("NO CARRIER")

    def line_settings(self, baud, bits, parity, stop):
        self.speed = baud

    # -- commands ---------------------------------------------------------------------------

    def _reply(self, *lines):
        self.line.send(b"".join(b"\r\n" + l.encode() + b"\r\n" for l in lines))

    def _command(self, rest):
        up = rest.upper()
        if up in ("", "Z"):
            if up == "Z":
                self.reset()
            self._reply("OK")
        elif up in ("E0", "E1"):
            self.echo = up == "E1"
            self._reply("OK")
        elif up == "I":
            self._reply(self.IDENTITY, "OK")
        elif up == "+GMI":
            self._reply("devemu", "OK")
        elif up == "+GMM":
            self._reply("AtModem", "OK")
        elif up == "+CSQ":
            self._reply("+CSQ: 23,99", "OK")
        elif up.startswith("D"):
            number = rest[1:].lstrip("TtPp")
            if not number:
                self._reply("NO DIALTONE")
                return
            self.dialing = self.line.call_later(0.2, self._connect)
        elif up == "H" or up == "H0":
            self._hang_up(None)
            self._reply("OK")
        else:
            self._reply("ERROR")

    def _connect(self):
        self.dialing = None
        self.online = True
        self.plus = 0
        self._reply(f"CONNECT {self.speed}")
        self.line.set_modem(dcd=True)

    def _hang_up(self, message):
        if self.dialing:
            self.dialing.cancel()
            self.dialing = None
        was_online = self.online
        self.online = False
        self.line.set_modem(dcd=False)
        if message and was_online:
            self._reply(message)

    def _online_data(self, data):
        # The "remote" echoes what it gets; +++ returns to command mode.
        self.plus = self.plus + data.count(b"+") if data.strip(b"+") == b"" else 0
        if self.plus >= 3:
            self.online = False
            self._reply("OK")
            return
        self.line.send(data)
