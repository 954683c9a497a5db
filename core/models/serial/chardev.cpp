// SPDX-License-Identifier: MIT
// serial: the line backends: a pty master, or a listening tcp/unix socket with one peer, as byte streams on the strand.
#include "chardev.h"

#include "python/python_loader.h"

#include "devemu/log.h"
#include "devemu/number_text.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <fmt/core.h>

#include <asm/termbits.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <type_traits>

namespace devemu::serial {

namespace {

template<typename Stream>
class StreamFarEnd : public FarEnd
{
public:
	void send(const std::vector<uint8_t> &bytes) override
	{
		if (!stream_ || stopped_) {
			lost_ += bytes.size();
			return;
		}
		size_t room = kMaxQueued > out_.size() ? kMaxQueued - out_.size() : 0;
		size_t n = std::min(room, bytes.size());
		out_.insert(out_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
		lost_ += bytes.size() - n;
		writeNext();
	}
	void setReading(bool want) override
	{
		want_ = want;
		readNext();
	}
	bool peerConnected() const override { return stream_.has_value(); }

protected:
	static constexpr size_t kMaxQueued = 64 * 1024;

	void attach(Stream stream)
	{
		stream_.emplace(std::move(stream));
		out_.clear();
		readNext();
	}
	virtual void detached() {}
	void detach()
	{
		if (!stream_)
			return;
		boost::system::error_code ignored;
		stream_->close(ignored);
		stream_.reset();
		reading_ = writing_ = false;
		out_.clear();
		if (onPeer)
			onPeer(false);
		detached();
	}
	void readNext()
	{
		if (!stream_ || reading_ || !want_ || stopped_)
			return;
		reading_ = true;
		auto self = std::static_pointer_cast<StreamFarEnd>(shared_from_this());
		stream_->async_read_some(asio::buffer(in_), [self](const boost::system::error_code &ec, size_t n) {
			self->reading_ = false;
			if (self->stopped_ || ec == asio::error::operation_aborted)
				return;
			if (ec) {
				self->detach();
				return;
			}
			if (self->onData)
				self->onData(self->in_.data(), n);
			self->readNext();
		});
	}
	void writeNext()
	{
		if (!stream_ || writing_ || out_.empty() || stopped_)
			return;
		writing_ = true;
		size_t n = std::min<size_t>(out_.size(), 4096);
		inflight_.assign(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(n));
		out_.erase(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(n));
		auto self = std::static_pointer_cast<StreamFarEnd>(shared_from_this());
		asio::async_write(*stream_, asio::buffer(inflight_),
				  [self](const boost::system::error_code &ec, size_t) {
					  self->writing_ = false;
					  if (self->stopped_ || ec == asio::error::operation_aborted)
						  return;
					  if (ec) {
						  self->detach();
						  return;
					  }
					  self->writeNext();
				  });
	}
	void stopStream()
	{
		stopped_ = true;
		onData = nullptr;
		onPeer = nullptr;
		if (stream_) {
			boost::system::error_code ignored;
			stream_->close(ignored);
		}
	}

	std::optional<Stream> stream_;
	std::array<uint8_t, 1024> in_{};
	std::deque<uint8_t> out_;
	std::vector<uint8_t> inflight_;
	bool reading_ = false;
	bool writing_ = false;
	bool want_ = true;
	bool stopped_ = false;
};

/* A listening socket (tcp or unix): one peer at a time; a second connection is closed at once. */
template<typename Protocol>
class SocketFarEnd final : public StreamFarEnd<typename Protocol::socket>
{
public:
	SocketFarEnd(const Strand &strand, typename Protocol::endpoint endpoint, std::string label,
		     std::string unlinkPath)
		: acceptor_(strand), endpoint_(std::move(endpoint)), label_(std::move(label)),
		  unlink_(std::move(unlinkPath))
	{}
	/* Opens and binds; returns an error message or "". */
	std::string listen()
	{
		boost::system::error_code ec;
		acceptor_.open(endpoint_.protocol(), ec);
		if (!ec && std::is_same_v<Protocol, asio::ip::tcp>)
			acceptor_.set_option(typename Protocol::acceptor::reuse_address(true), ec);
		if (!ec)
			acceptor_.bind(endpoint_, ec);
		bound_ = !ec;
		if (!ec)
			acceptor_.listen(4, ec);
		if (ec)
			return ec.message();
		endpoint_ = acceptor_.local_endpoint(ec);
		return {};
	}
	void start() override { acceptNext(); }
	void stop() override
	{
		this->stopStream();
		boost::system::error_code ignored;
		acceptor_.close(ignored);
		if (bound_ && !unlink_.empty())
			::unlink(unlink_.c_str()); /* the socket file this far end created */
	}
	std::string describe() const override
	{
		if constexpr (std::is_same_v<Protocol, asio::ip::tcp>)
			return fmt::format("tcp:{}:{}", endpoint_.address().to_string(), endpoint_.port());
		else
			return fmt::format("unix:{}", endpoint_.path());
	}

private:
	void acceptNext()
	{
		auto self = std::static_pointer_cast<SocketFarEnd>(this->shared_from_this());
		acceptor_.async_accept([self](const boost::system::error_code &ec, typename Protocol::socket socket) {
			if (self->stopped_ || ec == asio::error::operation_aborted)
				return;
			if (!ec) {
				if (self->stream_) {
					boost::system::error_code ignored;
					socket.close(ignored); /* the line is taken */
				} else {
					self->attach(std::move(socket));
					if (self->onPeer)
						self->onPeer(true);
				}
			}
			self->acceptNext();
		});
	}

	typename Protocol::acceptor acceptor_;
	typename Protocol::endpoint endpoint_;
	std::string label_;
	std::string unlink_;
	bool bound_ = false;
};

/* A pseudo-terminal: we hold the master, a person or a program opens the slave. */
class PtyFarEnd final : public StreamFarEnd<asio::posix::stream_descriptor>
{
public:
	explicit PtyFarEnd(const Strand &strand) : strand_(strand) {}
	~PtyFarEnd() override
	{
		if (slave_ >= 0)
			::close(slave_);
	}
	std::string open()
	{
		int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0)
			return fmt::format("posix_openpt: {}", std::strerror(errno));
		char name[128];
		if (::grantpt(master) < 0 || ::unlockpt(master) < 0 || ::ptsname_r(master, name, sizeof(name)) != 0) {
			int err = errno;
			::close(master);
			return fmt::format("preparing the pty: {}", std::strerror(err));
		}
		path_ = name;
		/* Keep the slave open so the master never reads EIO, and make it raw so bytes pass unchanged. */
		slave_ = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (slave_ >= 0) {
			termios2 t{};
			if (::ioctl(slave_, TCGETS2, &t) == 0) {
				t.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
				t.c_oflag &= ~OPOST;
				t.c_lflag &= ~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
				t.c_cflag &= ~(CSIZE | PARENB);
				t.c_cflag |= CS8;
				t.c_cc[VMIN] = 1;
				t.c_cc[VTIME] = 0;
				::ioctl(slave_, TCSETS2, &t);
			}
		}
		attach(asio::posix::stream_descriptor(strand_, master));
		return {};
	}
	void start() override {}
	void stop() override { stopStream(); }
	std::string describe() const override { return "pty:" + path_; }
	bool peerConnected() const override { return true; }
	const std::string &path() const { return path_; }

private:
	Strand strand_;
	std::string path_;
	int slave_ = -1;
};

} // namespace

bool parseFarSpec(const std::string &text, FarSpec &spec, std::string &error)
{
	spec.text = text;
	if (text == "loopback") {
		spec.kind = FarKind::Loopback;
	} else if (text == "pty") {
		spec.kind = FarKind::Pty;
	} else if (text.rfind("tcp:", 0) == 0) {
		spec.kind = FarKind::Tcp;
		std::string rest = text.substr(4), host = "127.0.0.1";
		auto colon = rest.rfind(':');
		if (colon != std::string::npos) {
			host = rest.substr(0, colon);
			rest = rest.substr(colon + 1);
		}
		auto port = parseUnsigned(rest, 65535, 10);
		boost::system::error_code ec;
		spec.address = asio::ip::make_address(host, ec);
		spec.port = static_cast<uint16_t>(port.value_or(0));
		if (!port) {
			error = fmt::format("'{}' is not a port number", rest);
			return false;
		}
		if (ec) {
			error = fmt::format("'{}' is not an IP address", host);
			return false;
		}
	} else if (text.rfind("unix:", 0) == 0 && text.size() > 5) {
		spec.kind = FarKind::Unix;
		spec.path = text.substr(5);
	} else if (text.rfind("python:", 0) == 0 && text.size() > 7) {
		spec.kind = FarKind::Python;
		return python::parseScriptAndClass(text.substr(7), "FarEnd", spec.path, spec.cls, error);
	} else {
		error = "expected loopback, pty, tcp:PORT, tcp:HOST:PORT, unix:PATH or python:FILE[:CLASS]";
		return false;
	}
	return true;
}

std::shared_ptr<FarEnd> openFarEnd(const Strand &strand, const FarSpec &spec, const std::string &device,
				   std::string &error)
{
	std::shared_ptr<FarEnd> far;
	switch (spec.kind) {
	case FarKind::Loopback:
		return nullptr;
	case FarKind::Pty: {
		auto pty = std::make_shared<PtyFarEnd>(strand);
		error = pty->open();
		if (error.empty())
			DEVEMU_LOG(Info, device, "serial far end: pty {}", pty->path());
		far = pty;
		break;
	}
	case FarKind::Tcp: {
		auto sock = std::make_shared<SocketFarEnd<asio::ip::tcp>>(
			strand, asio::ip::tcp::endpoint(spec.address, spec.port), spec.text, "");
		error = sock->listen();
		if (!error.empty())
			error = fmt::format("cannot listen on {}:{}: {}", spec.address.to_string(), spec.port, error);
		else
			DEVEMU_LOG(Info, device, "serial far end: listening on {}", sock->describe());
		far = sock;
		break;
	}
	case FarKind::Unix: {
		const std::string &path = spec.path;
		struct stat st;
		if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
			::unlink(path.c_str()); /* a stale socket of an earlier run */
		auto sock = std::make_shared<SocketFarEnd<asio::local::stream_protocol>>(
			strand, asio::local::stream_protocol::endpoint(path), spec.text, path);
		error = sock->listen();
		if (!error.empty())
			error = fmt::format("cannot listen on {}: {}", path, error);
		else
			DEVEMU_LOG(Info, device, "serial far end: listening on {}", sock->describe());
		far = sock;
		break;
	}
	case FarKind::Python: {
		python::Backend *backend = python::loadBackend(error);
		if (!backend)
			return nullptr;
		far = backend->makeFarEnd(strand, spec.path, spec.cls, device, error);
		if (!far)
			return nullptr;
		DEVEMU_LOG(Info, device, "serial far end: {}", far->describe());
		break;
	}
	}
	if (!error.empty()) {
		far->stop();
		return nullptr;
	}
	return far;
}

} // namespace devemu::serial
