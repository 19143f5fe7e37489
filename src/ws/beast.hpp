// What the ws sources share to speak Boost.Beast and Asio: the short names, and the one warning
// GCC raises inside Boost.
#pragma once

// GCC reports a null dereference inside Asio's scheduler after inlining it into the including file;
// the system-header marking cannot hide a warning raised that late. A false positive in Boost.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wnull-dereference"
#endif

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>

namespace conncheck::ws {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using steady = std::chrono::steady_clock;

} // namespace conncheck::ws
