// SPDX-License-Identifier: MIT
// The control protocol of devemud and devemuctl: its version, the default socket, the command and field names.
#pragma once

/*
 * One JSON object per line each way over a unix stream socket. A request is
 * {"version": 1, "command": ...} plus the fields its command needs; a
 * response is {"ok": true, ...} or {"ok": false, "error": "..."}. Both sides
 * take every name from here; this header needs nothing but the language.
 */
namespace devemu {

/* A request naming another version is refused. */
inline constexpr int kControlProtocolVersion = 1;
inline constexpr const char *kDefaultControlPath = "/run/devemu/control";

namespace cmd {
inline constexpr const char *list = "list";
inline constexpr const char *stats = "stats";
inline constexpr const char *add = "add";
inline constexpr const char *remove = "remove";
inline constexpr const char *inject = "inject";
inline constexpr const char *fault = "fault";
inline constexpr const char *version = "version";
} // namespace cmd

namespace key {
/* Every request and response */
inline constexpr const char *version = "version";
inline constexpr const char *command = "command";
inline constexpr const char *ok = "ok";
inline constexpr const char *error = "error";
/* Request fields */
inline constexpr const char *device = "device"; /* a device's name; in add's response, its description */
inline constexpr const char *spec = "spec"; /* add: NAME=MODEL[,key=value...] */
inline constexpr const char *args = "args"; /* inject: verb and arguments */
inline constexpr const char *op = "op"; /* fault: read, write, ioctl, open, poll */
inline constexpr const char *errnoValue = "errno"; /* fault: a name (EIO) or a number */
inline constexpr const char *delayMs = "delay_ms";
inline constexpr const char *shortLen = "short";
inline constexpr const char *count = "count"; /* fault: requests to hit; latency: requests in a bucket */
inline constexpr const char *clear = "clear";
/* version */
inline constexpr const char *protocol = "protocol";
/* list: one description per device */
inline constexpr const char *devices = "devices";
inline constexpr const char *name = "name";
inline constexpr const char *model = "model";
inline constexpr const char *transports = "transports";
inline constexpr const char *nodes = "nodes";
inline constexpr const char *state = "state";
inline constexpr const char *openFiles = "open_files";
inline constexpr const char *waitingRequests = "waiting_requests";
inline constexpr const char *fromConfig = "from_config";
/* stats */
inline constexpr const char *operations = "operations";
inline constexpr const char *requests = "requests";
inline constexpr const char *errors = "errors";
inline constexpr const char *latency = "latency";
inline constexpr const char *inKernel = "in_kernel"; /* stats: calls the kernel shim served from its FIFOs */
inline constexpr const char *belowUs = "below_us";
inline constexpr const char *bytesIn = "bytes_in";
inline constexpr const char *bytesOut = "bytes_out";
inline constexpr const char *opens = "opens";
inline constexpr const char *waited = "waited";
inline constexpr const char *cancelled = "cancelled";
inline constexpr const char *protocolErrors = "protocol_errors";
inline constexpr const char *dropped = "dropped";
inline constexpr const char *faults = "faults";
inline constexpr const char *remaining = "remaining";
inline constexpr const char *hits = "hits";
/* inject, remove */
inline constexpr const char *reply = "reply";
inline constexpr const char *removed = "removed";
} // namespace key

} // namespace devemu
