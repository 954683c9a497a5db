# SPDX-License-Identifier: MIT
"""Checksummed frames for the soak and load runs, and a reader that finds every lost, duplicated or
corrupted one.

A frame is a header (magic, stream, sequence number, payload length: little endian u16, u16, u32,
u16), the payload (bytes taken from a fixed pseudo-random block at an offset given by the sequence
number, so a payload shifted or copied from another frame does not match) and a CRC-32 of header
and payload."""

import random
import struct
import zlib

MAGIC = 0xDE7E
HEADER = struct.Struct("<HHIH")
TRAILER = struct.Struct("<I")
OVERHEAD = HEADER.size + TRAILER.size
_BLOCK = random.Random(0xDE7E).randbytes(1 << 16)


def payload(seq, length):
    start = (seq * 7919) % (len(_BLOCK) - length)
    return _BLOCK[start:start + length]


def frame(stream, seq, length):
    """The bytes of frame seq of stream with a payload of length bytes (at most 65535 - OVERHEAD)."""
    head = HEADER.pack(MAGIC, stream, seq, length) + payload(seq, length)
    return head + TRAILER.pack(zlib.crc32(head))


class FrameError(Exception):
    pass


def parse(buf):
    """The frames at the start of buf (a bytearray): [(stream, seq, length)], and how many bytes they
    took; a partial frame at the end is left. FrameError on a bad magic or checksum, or a payload
    that is not the one its sequence number gives."""
    frames, pos = [], 0
    while len(buf) - pos >= HEADER.size:
        magic, stream, seq, length = HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise FrameError(f"bad magic {magic:#06x} at byte {pos}")
        end = pos + HEADER.size + length
        if len(buf) < end + TRAILER.size:
            break
        (crc,) = TRAILER.unpack_from(buf, end)
        if crc != zlib.crc32(buf[pos:end]) or buf[pos + HEADER.size:end] != payload(seq, length):
            raise FrameError(f"frame {stream}/{seq}: checksum or payload mismatch")
        frames.append((stream, seq, length))
        pos = end + TRAILER.size
    return frames, pos


class SequenceCheck:
    """Counts, per stream, frames delivered, lost (sequence numbers skipped) and duplicated (a
    sequence number not above the last one seen), and the payload bytes delivered."""

    def __init__(self):
        self.next = {}
        self.frames = self.bytes = self.lost = self.duplicated = 0

    def see(self, stream, seq, length):
        expected = self.next.get(stream, 0)
        if seq < expected:
            self.duplicated += 1
            return
        self.lost += seq - expected
        self.next[stream] = seq + 1
        self.frames += 1
        self.bytes += length

    def finish(self, sent):
        """Frames still missing at the end: sent is {stream: frames written}."""
        for stream, n in sent.items():
            self.lost += max(0, n - self.next.get(stream, 0))
