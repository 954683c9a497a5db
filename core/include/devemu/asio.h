// SPDX-License-Identifier: MIT
// The project's one include point for Boost.Asio (Boost 1.74 needs <utility> before awaitable.hpp on g++ 12).
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/local/stream_protocol.hpp>

namespace devemu {
namespace asio = boost::asio;
using Executor = asio::io_context::executor_type;
using Strand = asio::strand<Executor>;
} // namespace devemu
