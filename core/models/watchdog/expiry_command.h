// SPDX-License-Identifier: MIT
// watchdog: the on_expiry command, run without waiting and reaped from the strand.
#pragma once

#include "devemu/strand_timer.h"

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace devemu {

/*
 * What a watchdog runs instead of resetting the machine: COMMAND with
 * /bin/sh -c, DEVEMU_DEVICE and DEVEMU_EXPIRIES in its environment, stdin
 * from /dev/null, in its own process group. Finished commands are collected
 * every 100 ms while any runs, and their status logged; nothing blocks.
 */
class ExpiryCommand
{
public:
	ExpiryCommand(const Strand &strand, std::string device, std::string command)
		: device_(std::move(device)), command_(std::move(command)), reaper_(strand)
	{}

	bool empty() const { return command_.empty(); }
	const std::string &command() const { return command_; }
	void run(uint32_t expiries);

private:
	void reap();

	std::string device_;
	std::string command_;
	StrandTimer reaper_;
	std::vector<pid_t> children_;
};

} // namespace devemu
