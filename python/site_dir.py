#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints where a pure Python package goes for an install prefix, so that the Python that runs it
finds it: on Debian /usr/lib/python3/dist-packages for /usr and /usr/local/lib/python3.X/dist-packages
for /usr/local (meson 1.0 picks /usr/local/lib/python3/dist-packages, which Debian's Python does not
search); elsewhere the prefix's own site-packages."""
import sys
import sysconfig

prefix = sys.argv[1]
schemes = sysconfig.get_scheme_names()
if prefix == "/usr" and "deb_system" in schemes:
    print(sysconfig.get_path("purelib", "deb_system"))
elif prefix == "/usr/local" and "posix_local" in schemes:
    print(sysconfig.get_path("purelib", "posix_local"))
else:
    print(sysconfig.get_path("purelib", "posix_prefix", vars={"base": prefix, "platbase": prefix}))
