// SPDX-License-Identifier: MIT
// ControlServer: devemud's control socket (accepts connections, one JSON request and response per line).
#pragma once

#include "protocol.h"

#include "devemu/asio.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace devemu {

class ControlServer
{
public:
	/* Answers one request (already parsed) by calling reply once, now or later. */
	using Handler = std::function<void(const nlohmann::json &request, std::function<void(nlohmann::json)> reply)>;

	ControlServer(asio::io_context &io, Handler handler);
	~ControlServer();
	/* Listens on path (replacing a stale socket), mode 0600, or 0660 with group gid when gid >= 0. */
	int listen(const std::string &path, long gid, std::string &error);
	void close();

private:
	class Session;
	void accept();

	asio::io_context &io_;
	Handler handler_;
	asio::local::stream_protocol::acceptor acceptor_;
	std::string path_;
};

/* The reply for a request that could not be served. */
nlohmann::json controlError(const std::string &message);

/* A response as one line on the socket; text that is not UTF-8 is replaced, never an exception. */
std::string controlResponseLine(const nlohmann::json &response);

/*
 * Decodes one request line (its newline may be included) and passes the request to handler; a malformed
 * line, another protocol version or an exception from handler gets an error reply instead.
 */
void handleControlLine(std::string_view line, const ControlServer::Handler &handler,
		       const std::function<void(nlohmann::json)> &reply);

} // namespace devemu
