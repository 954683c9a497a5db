// SPDX-License-Identifier: MIT
// What a model may ask about the caller of the request it serves: callerCapable(), the kernel's capable() for it.
#pragma once

#include "devemu/model.h"

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace devemu {

/*
 * Whether the caller of file's current request holds capability cap (CAP_SYS_TIME, ...) in the
 * initial user namespace, as the kernel's capable(cap) answers for the caller of the same request
 * on a real device: a file opened by root and passed to an unprivileged process is not privileged
 * there, nor is a process that has the capability only in a user namespace of its own.
 *
 * From the driver's report where it gives one (the kernel shim: exact, on every request). Otherwise
 * (CUSE, the FUSE fallback) from /proc/PID of the calling thread, which is blocked in its system
 * call while the model runs: its CapEff, if it is in the daemon's user namespace. False when neither
 * tells (no pid, the process gone). LSM policy (AppArmor, SELinux) is not consulted.
 */
bool callerCapable(const OpenFile &file, int cap);

/* The same from a request's caller as OpenFile holds it (callerPid, callerCaps), for models that keep a copy. */
bool callerCapable(pid_t callerPid, const std::optional<uint64_t> &callerCaps, int cap);

/* The effective capabilities of thread tid in the initial user namespace from /proc (0 in another
 * user namespace), nullopt when /proc does not tell. What callerCapable() falls back on. */
std::optional<uint64_t> procCapabilities(pid_t tid);

} // namespace devemu
