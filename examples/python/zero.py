# SPDX-License-Identifier: MIT
"""/dev/zero in Python: the python model's per-request cost next to the C++ zero model.

    devemud --device pyzero0=python,script=examples/python/zero.py,class=Zero

tests/bench/run.sh measures it as the python-cuse and python-fuse targets.
"""


class Zero:
    def __init__(self, device):
        pass

    def read(self, file, size):
        return bytes(size)

    def write(self, file, data):
        return len(data)
