// SPDX-License-Identifier: MIT
// ControlServer: accepts connections, reads one JSON request per line, writes one JSON response per line.
#include "control_server.h"

#include "devemu/log.h"

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <sys/stat.h>
#include <unistd.h>

namespace devemu {

namespace {
constexpr size_t kMaxRequest = 1 << 20;
}

nlohmann::json controlError(const std::string &message)
{
	return { { key::ok, false }, { key::error, message } };
}

std::string controlResponseLine(const nlohmann::json &response)
{
	/*
	 * An answer may quote what a request carried (the parser's error quotes the bytes it stopped
	 * at), which need not be UTF-8: those bytes are replaced rather than thrown over.
	 */
	return response.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void handleControlLine(std::string_view line, const ControlServer::Handler &handler,
		       const std::function<void(nlohmann::json)> &reply)
{
	try {
		nlohmann::json request = nlohmann::json::parse(line);
		if (!request.is_object())
			reply(controlError("a request is a JSON object"));
		else if (request.contains(key::version) &&
			 (!request[key::version].is_number_integer() ||
			  request[key::version].get<int>() != kControlProtocolVersion))
			reply(controlError(fmt::format("protocol version {} is not supported (this daemon speaks {})",
						       request[key::version].dump(), kControlProtocolVersion)));
		else
			handler(request, reply);
	} catch (const nlohmann::json::exception &e) {
		reply(controlError(fmt::format("bad request: {}", e.what())));
	} catch (const std::exception &e) {
		reply(controlError(fmt::format("internal error: {}", e.what())));
	}
}

class ControlServer::Session : public std::enable_shared_from_this<ControlServer::Session>
{
public:
	Session(asio::local::stream_protocol::socket socket, Handler &handler)
		: socket_(std::move(socket)), handler_(handler), in_(kMaxRequest)
	{}

	void start() { readRequest(); }

private:
	void readRequest()
	{
		asio::async_read_until(socket_, in_, '\n',
				       [self = shared_from_this()](const boost::system::error_code &ec, size_t n) {
					       self->onRequest(ec, n);
				       });
	}

	void onRequest(const boost::system::error_code &ec, size_t n)
	{
		if (ec == asio::error::not_found) {
			respond(controlError("request too long (over 1 MiB)"), true);
			return;
		}
		if (ec)
			return; /* the client went away */
		std::string line(asio::buffers_begin(in_.data()),
				 asio::buffers_begin(in_.data()) + static_cast<ptrdiff_t>(n));
		in_.consume(n);
		/* Exactly one response per request, whether the handler answers or throws. */
		auto replied = std::make_shared<bool>(false);
		auto reply = [self = shared_from_this(), replied](nlohmann::json r) {
			if (std::exchange(*replied, true))
				return;
			self->respond(r, false);
		};
		handleControlLine(line, handler_, reply);
	}

	void respond(const nlohmann::json &response, bool thenClose)
	{
		out_ = controlResponseLine(response);
		asio::async_write(socket_, asio::buffer(out_),
				  [self = shared_from_this(), thenClose](const boost::system::error_code &ec, size_t) {
					  if (!ec && !thenClose)
						  self->readRequest();
				  });
	}

	asio::local::stream_protocol::socket socket_;
	Handler &handler_;
	asio::streambuf in_;
	std::string out_;
};

ControlServer::ControlServer(asio::io_context &io, Handler handler)
	: io_(io), handler_(std::move(handler)), acceptor_(io)
{}

ControlServer::~ControlServer()
{
	close();
}

int ControlServer::listen(const std::string &path, long gid, std::string &error)
{
	std::string dir = path.substr(0, path.rfind('/'));
	if (!dir.empty())
		mkdir(dir.c_str(), 0755);
	boost::system::error_code ec;
	asio::local::stream_protocol::endpoint endpoint(path);
	{
		/* Another devemud answering there keeps it; a socket left by a daemon that died goes. */
		asio::local::stream_protocol::socket probe(io_);
		probe.connect(endpoint, ec);
		if (!ec) {
			error = fmt::format(
				"control socket {} is in use by another devemud (give this one --control PATH)", path);
			return -EADDRINUSE;
		}
		ec.clear();
	}
	unlink(path.c_str());
	acceptor_.open(endpoint.protocol(), ec);
	if (!ec)
		acceptor_.bind(endpoint, ec);
	if (!ec && chmod(path.c_str(), gid >= 0 ? 0660 : 0600) < 0)
		ec.assign(errno, boost::system::system_category());
	if (!ec && gid >= 0 && chown(path.c_str(), 0, static_cast<gid_t>(gid)) < 0)
		ec.assign(errno, boost::system::system_category());
	if (!ec)
		acceptor_.listen(asio::socket_base::max_listen_connections, ec);
	if (ec) {
		error = fmt::format("control socket {}: {}", path, ec.message());
		return -ec.value();
	}
	path_ = path;
	accept();
	return 0;
}

void ControlServer::accept()
{
	acceptor_.async_accept(
		[this](const boost::system::error_code &ec, asio::local::stream_protocol::socket socket) {
			if (ec)
				return;
			std::make_shared<Session>(std::move(socket), handler_)->start();
			accept();
		});
}

void ControlServer::close()
{
	boost::system::error_code ec;
	if (acceptor_.is_open()) {
		acceptor_.close(ec);
		if (!path_.empty())
			unlink(path_.c_str());
	}
}

} // namespace devemu
