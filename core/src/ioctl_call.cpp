// SPDX-License-Identifier: MIT
// IoctlCall: one round of an ioctl, tracking which caller memory the model asked for and what this round carries.
#include "devemu/model.h"

#include <asm-generic/ioctl.h>
#include <cerrno>

namespace devemu {

IoctlCall::IoctlCall(uint32_t cmd, uint64_t arg, std::span<const std::byte> in, size_t outRoom, bool restricted)
	: cmd_(cmd), arg_(arg), in_(in), outRoom_(outRoom), restricted_(restricted)
{}

bool IoctlCall::rangeAllowed(uint64_t addr, size_t len, bool output) const
{
	if (!restricted_)
		return true;
	/* A restricted driver carries exactly _IOC_SIZE(cmd) bytes at arg, in the encoded direction. */
	unsigned dir = _IOC_DIR(cmd_);
	bool dirOk = output ? (dir & _IOC_READ) : (dir & _IOC_WRITE);
	/* Output may be shorter (EVIOCGNAME answers with the string's length); input is all or nothing. */
	return dirOk && addr == arg_ && (output ? len <= _IOC_SIZE(cmd_) : len == _IOC_SIZE(cmd_));
}

std::optional<std::span<const std::byte>> IoctlCall::readUser(uint64_t addr, size_t len)
{
	if (!rangeAllowed(addr, len, false)) {
		unreachable_ = true;
		missing_ = true;
		return std::nullopt;
	}
	inRanges_.push_back({ addr, len });
	if (!missing_ && inCursor_ + len <= in_.size()) {
		auto bytes = in_.subspan(inCursor_, len);
		inCursor_ += len;
		return bytes;
	}
	/* Ranges are carried in request order: once one is missing, every later one is too. */
	missing_ = true;
	return std::nullopt;
}

bool IoctlCall::writeUser(uint64_t addr, std::span<const std::byte> data)
{
	if (!rangeAllowed(addr, data.size(), true)) {
		unreachable_ = true;
		missing_ = true;
		return false;
	}
	outRanges_.push_back({ addr, data.size() });
	out_.insert(out_.end(), data.begin(), data.end());
	if (out_.size() > outRoom_) {
		missing_ = true;
		return false;
	}
	return true;
}

bool IoctlCall::canWriteUser(uint64_t addr, size_t len) const
{
	return !missing_ && rangeAllowed(addr, len, true) && out_.size() + len <= outRoom_;
}

IoctlResult IoctlCall::done(int ret)
{
	if (!missing_)
		return { IoctlResult::Kind::Done, ret };
	if (restricted_ || unreachable_)
		return IoctlResult::error(-ENOTTY);
	return { IoctlResult::Kind::Retry, 0 };
}

} // namespace devemu
