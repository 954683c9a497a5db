#!/bin/sh
# SPDX-License-Identifier: MIT
# Run by `meson install` (not with --destdir): creates the devemu group and applies the udev rules.
# Packagers get the same from sysusers.d/devemu.conf and 70-devemu.rules (systemd-sysusers and
# udev run them at package install and boot).
# $1: the installed sysusers.d/devemu.conf.
set -u
if [ "$(id -u)" != 0 ]; then
	echo "devemu: not root: create the group yourself (systemd-sysusers $1, or groupadd --system devemu)"
	exit 0
fi
if ! getent group devemu >/dev/null; then
	if command -v systemd-sysusers >/dev/null; then
		systemd-sysusers "$1"
	else
		groupadd --system devemu
	fi && echo "devemu: created the system group devemu (its members may run devemud without root)"
fi
if command -v udevadm >/dev/null && [ -d /run/udev ]; then
	udevadm control --reload 2>/dev/null
	udevadm trigger --subsystem-match=misc --sysname-match=cuse --sysname-match=devemu-kshim 2>/dev/null
fi
exit 0
