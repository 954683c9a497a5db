# SPDX-License-Identifier: MIT
"""A GPS receiver at the far end of devemu's UART: NMEA 0183 at 9600 baud, one fix a second.

    devemud --device ttyGPS0=serial,far=python:examples/python/gps.py:Gps
    gpsd -N -n /dev/ttyGPS0 & gpspipe -w -n 8     # TPV reports with the fix below

Sends $GPRMC, $GPGGA and $GPGSA each second at the line's speed (9600 8N1 is about 960
characters a second: a burst of three sentences takes ~0.2 s on the wire, as on a real receiver).
The position walks slowly north-east; set LAT/LON (degrees) for another place. Commands are
ignored, as a receiver without a binary protocol does; a program that sets another speed gets
garbage back until it sets 9600 again (the receiver does not follow).
"""

import datetime


def _checksum(body):
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return f"{c:02X}"


def sentence(body):
    """$BODY*CS\\r\\n"""
    return f"${body}*{_checksum(body)}\r\n".encode("ascii")


def _dm(value, positive, negative, width):
    hemi = positive if value >= 0 else negative
    value = abs(value)
    deg = int(value)
    minutes = (value - deg) * 60
    return f"{deg:0{width}d}{minutes:07.4f}", hemi


class Gps:
    LAT = 48.8584
    LON = 2.2945
    ALT = 35.0
    BAUD = 9600

    def __init__(self, line):
        self.line = line
        self.fixes = 0
        self.baud = 9600
        self.timer = line.call_later(0.5, self.tick)

    def line_settings(self, baud, bits, parity, stop):
        self.baud = baud

    def close(self):
        self.timer.cancel()

    def sentences(self, now):
        lat, ns = _dm(self.LAT + self.fixes * 1e-5, "N", "S", 2)
        lon, ew = _dm(self.LON + self.fixes * 1e-5, "E", "W", 3)
        hms = now.strftime("%H%M%S") + ".00"
        dmy = now.strftime("%d%m%y")
        return [
            sentence(f"GPRMC,{hms},A,{lat},{ns},{lon},{ew},0.5,45.0,{dmy},,,A"),
            sentence(f"GPGGA,{hms},{lat},{ns},{lon},{ew},1,08,0.9,{self.ALT:.1f},M,47.0,M,,"),
            sentence("GPGSA,A,3,04,05,09,12,17,20,24,25,,,,,1.5,0.9,1.2"),
        ]

    def tick(self):
        self.timer = self.line.call_later(1.0, self.tick)
        if self.baud != self.BAUD:
            self.line.send(b"\xff\x00\xfe")  # what a 9600-baud talker looks like at another speed
            return
        now = datetime.datetime.now(datetime.timezone.utc)
        self.line.send(b"".join(self.sentences(now)))
        self.fixes += 1
