# SPDX-License-Identifier: MIT
"""What the kernel logged while a test ran, read from /dev/kmsg (records since the last look)."""

import errno
import os
import re

PROBLEM = re.compile(r"WARNING:|BUG:|BUG [^ ]+ \(|Oops|general protection|Call Trace:|list_(add|del) corruption|"
                     r"Poison overwritten|Redzone|blocked for more than|usercopy")


class KernelLog:
    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def new_lines(self):
        """The messages logged since the last call (or since opening)."""
        out = []
        while True:
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before we read it: go on with the next
                    out.append("(kernel log records lost: the ring buffer wrapped)")
                    continue
                raise
            text = record.decode(errors="replace")
            _, _, message = text.partition(";")
            out += [line for line in message.splitlines() if not line.startswith(" ")]

    def problems(self):
        return [line for line in self.new_lines() if PROBLEM.search(line)]

    def close(self):
        os.close(self.fd)
