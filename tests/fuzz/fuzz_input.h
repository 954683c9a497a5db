// SPDX-License-Identifier: MIT
// FuzzInput: takes numbers and byte runs off the front of a fuzzer's input (zeros once it is used up).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace devemu::fuzz {

class FuzzInput
{
public:
	FuzzInput(const uint8_t *data, size_t size) : data_(data), size_(size) {}

	bool empty() const { return size_ == 0; }

	template<typename T>
	T take()
	{
		T value{};
		size_t n = std::min(sizeof(T), size_);
		std::memcpy(&value, data_, n);
		data_ += n;
		size_ -= n;
		return value;
	}

	std::span<const std::byte> bytes(size_t n)
	{
		n = std::min(n, size_);
		std::span<const std::byte> out(reinterpret_cast<const std::byte *>(data_), n);
		data_ += n;
		size_ -= n;
		return out;
	}

	/* The rest as text. */
	std::string_view rest()
	{
		std::string_view out(reinterpret_cast<const char *>(data_), size_);
		data_ += size_;
		size_ = 0;
		return out;
	}

private:
	const uint8_t *data_;
	size_t size_;
};

} // namespace devemu::fuzz
