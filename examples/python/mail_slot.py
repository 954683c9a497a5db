# SPDX-License-Identifier: MIT
"""A one-slot mailbox device written in Python (the python model).

    devemud --device box0=python,script=examples/python/mail_slot.py,class=Mailbox
    echo hi > /dev/box0; cat /dev/box0            # cat blocks until something is written
    devemuctl inject box0 post hello              # arrives 50 ms later, waking readers

write() fills the slot, read() empties it; a read of an empty slot parks the caller (the core
does the blocking, O_NONBLOCK and signals); poll() reports POLLIN while there is mail. The
ioctl _IOWR('M', 1, __u32) MBOX_PEEK answers how many bytes wait (size-encoded: works on the
FUSE fallback too).
"""

import errno
import select
import struct

MBOX_PEEK = (3 << 30) | (4 << 16) | (ord("M") << 8) | 1


class Mailbox:
    def __init__(self, device):
        self.device = device
        self.slot = b""

    def read(self, file, size):
        if not self.slot:
            raise BlockingIOError
        data, self.slot = self.slot[:size], self.slot[size:]
        self.device.notify(select.POLLOUT)
        return data

    def write(self, file, data):
        self.slot += data
        self.device.notify(select.POLLIN)
        return len(data)

    def poll(self, file):
        return select.POLLOUT | (select.POLLIN if self.slot else 0)

    def readable(self, file):
        return len(self.slot)

    def ioctl(self, file, cmd, call):
        if cmd != MBOX_PEEK:
            raise OSError(errno.ENOTTY, "")
        call.write_user(call.arg, struct.pack("I", len(self.slot)))

    def inject_post(self, *words):
        """post TEXT: TEXT arrives 50 ms later."""
        def arrive():
            self.slot += " ".join(words).encode()
            self.device.notify(select.POLLIN)
        self.device.call_later(0.05, arrive)
        return "posted"
