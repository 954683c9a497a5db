# SPDX-License-Identifier: MIT
"""A temperature and humidity sensor on an I2C bus, written in Python (its register map follows ST's
HTS221, simplified: no calibration tables, the outputs are in hundredths).

    devemud --device i2c-7=i2c,slaves=python:examples/python/i2c_sensor.py:Hts221@0x5f+eeprom@0x50
    i2cset -y 7 0x5f 0x20 0x80          # CTRL_REG1: power up; a conversion follows 10 ms later
    i2cget -y 7 0x5f 0x27               # STATUS: 0x03 (temperature and humidity ready)
    i2cget -y 7 0x5f 0xaa w             # TEMP_OUT_L/H with auto-increment: 0x0866 = 21.50 degC
    devemuctl inject i2c-7 chip 0x5f temp -5.25

Registers (an address with bit 7 set auto-increments over a multi-byte read or write, as on the
real chip; without it the chip repeats the same register):
    0x0f WHO_AM_I   0xbc, read-only
    0x20 CTRL_REG1  bit 7 PD: 0 = powered down (the outputs keep their last values)
    0x27 STATUS     bit 0 temperature ready, bit 1 humidity ready; cleared by reading the high byte
    0x28 HUMIDITY_OUT_L/H   relative humidity in 1/100 %, unsigned
    0x2a TEMP_OUT_L/H       temperature in 1/100 degC, two's complement
"""

WHO_AM_I, CTRL_REG1, STATUS, HUMIDITY_OUT_L, TEMP_OUT_L = 0x0F, 0x20, 0x27, 0x28, 0x2A
AUTO_INCREMENT = 0x80
CONVERSION_SECONDS = 0.01


class Hts221:
    def __init__(self, chip):
        self.chip = chip
        self.celsius, self.humidity = 21.5, 45.0
        self.regs = bytearray(256)
        self.regs[WHO_AM_I] = 0xBC
        self.pointer, self.increment, self.addressed = 0, False, False
        self.timer = None

    # the bus: START, the first byte written is the register address, then data
    def start(self):
        self.addressed = False

    def write(self, byte):
        if not self.addressed:
            self.pointer, self.increment = byte & 0x7F, bool(byte & AUTO_INCREMENT)
            self.addressed = True
            return True
        if self.pointer == CTRL_REG1:
            self.regs[CTRL_REG1] = byte
            if byte & 0x80:
                self._schedule_conversion()
        self._advance()
        return True  # ACK; read-only registers ignore the byte, as the chip does

    def read(self):
        value = self.regs[self.pointer]
        if self.pointer == TEMP_OUT_L + 1:
            self.regs[STATUS] &= ~0x01
        elif self.pointer == HUMIDITY_OUT_L + 1:
            self.regs[STATUS] &= ~0x02
        self._advance()
        return value

    def _advance(self):
        if self.increment:
            self.pointer = (self.pointer + 1) & 0x7F

    # one conversion CONVERSION_SECONDS after power-up, from the ambient the test set
    def _schedule_conversion(self):
        if self.timer is None or not self.timer.pending:
            self.timer = self.chip.call_later(CONVERSION_SECONDS, self._convert)

    def _convert(self):
        if not self.regs[CTRL_REG1] & 0x80:
            return
        t = round(self.celsius * 100) & 0xFFFF
        h = max(0, min(10000, round(self.humidity * 100)))
        self.regs[TEMP_OUT_L:TEMP_OUT_L + 2] = t.to_bytes(2, "little")
        self.regs[HUMIDITY_OUT_L:HUMIDITY_OUT_L + 2] = h.to_bytes(2, "little")
        self.regs[STATUS] |= 0x03

    # devemuctl inject NAME chip 0x5f temp CELSIUS | humidity PERCENT
    def inject(self, verb, value=None):
        if verb not in ("temp", "humidity") or value is None:
            raise ValueError("temp CELSIUS | humidity PERCENT")
        if verb == "temp":
            self.celsius = float(value)
        else:
            self.humidity = float(value)
        self._schedule_conversion()
        return f"{verb} {value}: the next conversion reports it"

    def describe(self):
        powered = "on" if self.regs[CTRL_REG1] & 0x80 else "down"
        return (f"HTS221 at 0x{self.chip.address:02x}: power {powered}, {self.celsius} degC, "
                f"{self.humidity} %RH, status 0x{self.regs[STATUS]:02x}\n")
