// SPDX-License-Identifier: MIT
// Unit tests of the built-in models and their options.
#include "harness.h"

#include "rng/chacha20.h"

#include <poll.h>
#include <set>

using namespace devemu;
using test::bytes;
using test::text;

TEST_CASE("loopback: byte-exact round trip, in order, across the ring's wrap")
{
	test::Harness h("loopback", { { "capacity", "1000" } });
	int fh = h.open();
	std::string sent, got;
	for (int i = 0; i < 300; i++) {
		std::string chunk = std::to_string(i * 7919) + ";";
		sent += chunk;
		REQUIRE(h.write(fh, bytes(chunk))->result == static_cast<int>(chunk.size()));
		got += text(h.read(fh, 5)->data); /* drains slower than it fills: the ring wraps often */
	}
	while (got.size() < sent.size())
		got += text(h.read(fh, 333)->data);
	CHECK(got == sent);
}

TEST_CASE("loopback when_full=drop never blocks and counts the dropped bytes")
{
	test::Harness h("loopback", { { "capacity", "4" }, { "when_full", "drop" } });
	int fh = h.open();
	CHECK(h.write(fh, bytes("abcdefgh"))->result == 8);
	CHECK(h.core_->model()->dropped() == 4);
	CHECK(text(h.read(fh, 10)->data) == "abcd");
}

TEST_CASE("zero: reads are zeros of the asked size, writes vanish, always ready")
{
	test::Harness h("zero");
	int fh = h.open();
	h.window_.slot(0)[0] = std::byte{ 0x77 }; /* stale data in the slot must not leak */
	auto r = h.read(fh, 4096);
	REQUIRE(r->result == 4096);
	CHECK(std::all_of(r->data.begin(), r->data.end(), [](std::byte b) { return b == std::byte{ 0 }; }));
	CHECK(h.write(fh, bytes("gone"))->result == 4);
	CHECK((h.poll(fh) & (POLLIN | POLLOUT)) == (POLLIN | POLLOUT));
}

TEST_CASE("ChaCha20 matches the RFC 8439 block function test vector")
{
	std::array<uint8_t, 32> key;
	for (int i = 0; i < 32; i++)
		key[i] = uint8_t(i);
	std::array<uint8_t, 12> nonce = { 0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0 };
	ChaCha20 c(key, nonce, 1);
	uint8_t out[64];
	c.block(out);
	const uint8_t expect[16] = { 0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15,
				     0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20, 0x71, 0xc4 };
	CHECK(std::memcmp(out, expect, 16) == 0);
	CHECK(out[63] == 0x4e);
}

TEST_CASE("rng: a seed gives a reproducible stream, different seeds differ, and no seed is random")
{
	test::Harness a("rng", { { "seed", "42" } }), b("rng", { { "seed", "42" } }), c("rng", { { "seed", "43" } });
	test::Harness d("rng"), e("rng");
	auto read = [](test::Harness &h) { return h.read(h.open(), 64)->data; };
	auto ra = read(a), rb = read(b), rc = read(c), rd = read(d), re = read(e);
	CHECK(ra.size() == 64);
	CHECK(ra == rb);
	CHECK(ra != rc);
	CHECK(rd != re);
	/* Bytes look random: all 16 nibble values appear in 64 bytes with near certainty. */
	std::set<int> nibbles;
	for (auto x : ra)
		nibbles.insert(static_cast<int>(x) & 0xf);
	CHECK(nibbles.size() >= 12);
}

TEST_CASE("model options: bad values and unknown keys name the device, model and key")
{
	auto error = [](std::string model, ModelOptions::Pairs pairs) {
		ModelOptions opts("dev0", model, pairs);
		asio::io_context io;
		Window w;
		REQUIRE(Window::create({}, "o", 0, w) == 0);
		DeviceCore core(Strand(io.get_executor()), "dev0", w);
		ModelRegistry::builtin().find(model)->factory(opts, core);
		return opts.error();
	};
	CHECK(error("loopback", { { "capacity", "64K" } }) == "");
	CHECK(error("loopback", { { "capacity", "0" } }) ==
	      "device 'dev0': model 'loopback': option 'capacity=0': expected a number from 1 to 67108864");
	CHECK(error("loopback", { { "capacity", "lots" } }).find("option 'capacity=lots'") != std::string::npos);
	CHECK(error("loopback", { { "when_full", "explode" } }) ==
	      "device 'dev0': model 'loopback': option 'when_full=explode': expected one of block|drop");
	CHECK(error("loopback", { { "colour", "red" } }) ==
	      "device 'dev0': model 'loopback' has no option 'colour' (its options: capacity, when_full)");
	CHECK(error("zero", { { "seed", "1" } }) ==
	      "device 'dev0': model 'zero' has no option 'seed' (its options: none)");
	CHECK(error("rng", { { "seed", "0x10" } }) == "");
}

TEST_CASE("loopback inject: data with escapes and hex arrive as if written; clear empties the FIFO")
{
	test::Harness h("loopback", { { "capacity", "8" } });
	int fh = h.open();
	auto r = h.read(fh, 100);
	CHECK_FALSE(r->done);
	std::string reply;
	CHECK(h.core_->inject({ "data", "a\\tb\\x41" }, reply) == 0);
	CHECK(reply == "injected 4 bytes");
	REQUIRE(r->done); /* the parked reader was woken */
	CHECK(text(r->data) == "a\tbA");
	CHECK(h.core_->inject({ "hex", "68 69", "0a" }, reply) == 0);
	CHECK(text(h.read(fh, 100)->data) == "hi\n");
	CHECK(h.core_->inject({ "data", "0123456789" }, reply) == 0);
	CHECK(reply == "injected 8 bytes, dropped 2 (FIFO full)");
	CHECK(h.core_->inject({ "clear" }, reply) == 0);
	CHECK(reply == "discarded 8 bytes");
	CHECK(h.read(fh, 10, true)->result == -EAGAIN);
	CHECK(h.core_->inject({ "hex", "6" }, reply) == -EINVAL);
	CHECK(reply == "an odd number of hex digits");
	CHECK(h.core_->inject({ "data", "\\x4" }, reply) == -EINVAL);
	CHECK(h.core_->inject({ "explode" }, reply) == -EINVAL);
	CHECK(h.core_->inject({ "data", "x" }, reply) == 0);
	test::Harness z("zero");
	CHECK(z.core_->inject({ "data", "x" }, reply) == -EOPNOTSUPP);
}
