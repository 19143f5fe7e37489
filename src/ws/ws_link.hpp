// One WebSocket connection of the collector, plain or TLS, from name resolution to its end: a
// private header of collector.cpp, apart so that each file stays readable.
#pragma once

#include "beast.hpp"

#include "conncheck/ws/address.hpp"
#include "conncheck/ws/collector.hpp"

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/core.h>
#include <functional>
#include <memory>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string>
#include <type_traits>
#include <utility>

namespace conncheck::ws::detail {

// One connection attempt, from name resolution to its end.
class Link {
public:
    virtual ~Link() = default;
    virtual void start() = 0;
    // Fixed mode: a close handshake bounded by the close timeout, then close the TCP socket
    // whatever happened; `done` runs (posted) once the socket is closed.
    virtual void close_then(std::function<void()> done) = 0;
    // Leaky mode: stop every pending operation but keep the socket open, unread and unclosed.
    virtual void abandon() = 0;
    [[nodiscard]] virtual bool socket_open() const = 0;
};

class Owner {
public:
    virtual ~Owner() = default;
    [[nodiscard]] virtual const CollectorConfig& config() const = 0;
    [[nodiscard]] virtual const WsUrl& url() const = 0;
    virtual void on_up(const std::string& peer) = 0;
    virtual void on_message() = 0;
    virtual void on_down(EndReason reason, std::string detail) = 0;
};

template <class Ws>
class WsLink final : public Link, public std::enable_shared_from_this<WsLink<Ws>> {
    static constexpr bool secure = !std::is_same_v<typename Ws::next_layer_type, beast::tcp_stream>;

public:
    template <class... StreamArgs>
    WsLink(Owner& owner, net::io_context& ioc, StreamArgs&&... args)
        : owner_(owner), ws_(ioc, std::forward<StreamArgs>(args)...), resolver_(ioc), timer_(ioc) {}

    void start() override {
        auto self = this->shared_from_this();
        // The opening (resolve, connect, TLS, upgrade) is bounded by the heartbeat timeout too.
        arm_timer(steady::now() + owner_.config().heartbeat_timeout);
        // An IP literal needs no lookup (and no AI_ADDRCONFIG netlink query by glibc).
        error_code literal_ec;
        net::ip::make_address(owner_.url().host, literal_ec);
        const auto flags = literal_ec
                               ? tcp::resolver::flags()
                               : tcp::resolver::numeric_host | tcp::resolver::numeric_service;
        resolver_.async_resolve(owner_.url().host, owner_.url().port, flags,
                                [self](error_code ec, const tcp::resolver::results_type& results) {
                                    self->on_resolve(ec, results);
                                });
    }

    void close_then(std::function<void()> done) override {
        done_ = std::move(done);
        if (!socket_open() || !ws_.is_open()) {
            // Beast already closed the socket after a close frame, or the stream failed (EOF, a
            // reset): no close frame can be exchanged any more.
            finish();
            return;
        }
        // A silent peer never answers our close frame; the wait is bounded by the timer.
        auto self = this->shared_from_this();
        timer_.expires_after(owner_.config().close_timeout);
        timer_.async_wait([self](error_code ec) {
            if (!ec) self->finish();
        });
        ws_.async_close(websocket::close_code::normal, [self](error_code) { self->finish(); });
    }

    void abandon() override {
        error_code ignored;
        timer_.cancel();
        resolver_.cancel();
        // cancel() completes the pending read with operation_aborted; the fd stays open, so a
        // peer's FIN leaves this socket in CLOSE_WAIT and a silent peer leaves it ESTABLISHED.
        beast::get_lowest_layer(ws_).socket().cancel(ignored);
    }

    [[nodiscard]] bool socket_open() const override {
        return beast::get_lowest_layer(ws_).socket().is_open();
    }

private:
    enum class Phase { opening, open };

    void arm_timer(steady::time_point at) {
        timer_.expires_at(at);
        timer_.async_wait([self = this->shared_from_this()](error_code ec) {
            if (!ec) self->on_timer();
        });
    }

    void on_timer() {
        if (ended_) return;
        const auto timeout = owner_.config().heartbeat_timeout;
        if (phase_ == Phase::opening) {
            fail_opening(
                fmt::format("timed out after {}ms opening the connection", timeout.count()));
            return;
        }
        const auto due = last_received_ + timeout;
        if (steady::now() >= due) {
            end(EndReason::heartbeat_timeout,
                fmt::format("nothing received for {}ms", timeout.count()));
            return;
        }
        arm_timer(due);
    }

    void on_resolve(error_code ec, const tcp::resolver::results_type& results) {
        if (ended_) return;
        if (ec) {
            fail_opening(fmt::format("cannot resolve {}: {}", owner_.url().host, ec.message()));
            return;
        }
        beast::get_lowest_layer(ws_).async_connect(
            results, [self = this->shared_from_this()](error_code cec, const tcp::endpoint& peer) {
                self->on_connect(cec, peer);
            });
    }

    void on_connect(error_code ec, const tcp::endpoint& peer) {
        if (ended_) return;
        if (ec) {
            fail_opening(fmt::format("connect: {}", ec.message()));
            return;
        }
        peer_ = join_host_port(peer.address().to_string(), peer.port());
        if constexpr (secure) {
            auto& tls = ws_.next_layer();
            const std::string& host = owner_.url().host;
            error_code parse_ec;
            net::ip::make_address(host, parse_ec);
            // SNI carries host names only (RFC 6066 section 3), never an IP literal.
            if (parse_ec && SSL_set_tlsext_host_name(tls.native_handle(), host.c_str()) != 1) {
                fail_opening("TLS: cannot set the server name (SNI)");
                return;
            }
            if (!owner_.config().insecure) {
                tls.set_verify_mode(net::ssl::verify_peer);
                // OpenSSL checks the name itself during verification, and then says which check
                // failed ("hostname mismatch") instead of a bare "verify failed".
                X509_VERIFY_PARAM* param = SSL_get0_param(tls.native_handle());
                X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                const int set = parse_ec ? X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0)
                                         : X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
                if (set != 1) {
                    fail_opening("TLS: cannot set the host name to verify");
                    return;
                }
            } else {
                tls.set_verify_mode(net::ssl::verify_none);
            }
            tls.async_handshake(net::ssl::stream_base::client,
                                [self = this->shared_from_this()](error_code hec) {
                                    if (self->ended_) return;
                                    if (hec) {
                                        self->fail_opening(self->tls_failure(hec));
                                        return;
                                    }
                                    self->upgrade();
                                });
        } else {
            upgrade();
        }
    }

    // "certificate verify failed" alone does not say whether the chain or the name was wrong.
    std::string tls_failure(error_code ec) {
        std::string detail = fmt::format("TLS handshake: {}", ec.message());
        if constexpr (secure) {
            const long verify = SSL_get_verify_result(ws_.next_layer().native_handle());
            if (verify != X509_V_OK)
                detail += fmt::format(" ({})", X509_verify_cert_error_string(verify));
        }
        return detail;
    }

    void upgrade() {
        ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& request) {
            request.set(beast::http::field::user_agent, "conncheck-collector");
        }));
        // A market-data message is small; do not let a peer make us buffer 16 MB (Beast's default).
        ws_.read_message_max(1U << 20U);
        ws_.control_callback(
            [this](websocket::frame_type, beast::string_view) { last_received_ = steady::now(); });
        ws_.async_handshake(
            owner_.url().host_header(), owner_.url().target,
            [self = this->shared_from_this()](error_code ec) { self->on_handshake(ec); });
    }

    void on_handshake(error_code ec) {
        if (ended_) return;
        if (ec) {
            fail_opening(fmt::format("WebSocket handshake: {}", ec.message()));
            return;
        }
        phase_ = Phase::open;
        last_received_ = steady::now();
        arm_timer(last_received_ + owner_.config().heartbeat_timeout);
        owner_.on_up(peer_);
        if (!owner_.config().subscribe.empty()) {
            ws_.text(true);
            ws_.async_write(net::buffer(owner_.config().subscribe),
                            [self = this->shared_from_this()](error_code wec, std::size_t) {
                                if (wec && !self->ended_)
                                    self->end(EndReason::error,
                                              fmt::format("subscribe: {}", wec.message()));
                            });
        }
        read();
    }

    void read() {
        ws_.async_read(buffer_, [self = this->shared_from_this()](error_code ec, std::size_t) {
            self->on_read(ec);
        });
    }

    void on_read(error_code ec) {
        if (ended_) return; // a read cut short by our own close or abandon
        if (ec == websocket::error::closed) {
            const auto& why = ws_.reason();
            end(EndReason::close, fmt::format("code={} reason={}", static_cast<unsigned>(why.code),
                                              std::string(why.reason.data(), why.reason.size())));
            return;
        }
        // A TLS peer that closes TCP without close_notify shows up as stream_truncated.
        if (ec == net::error::eof || ec == net::ssl::error::stream_truncated) {
            end(EndReason::eof, "peer closed TCP without a close frame");
            return;
        }
        if (ec) {
            end(EndReason::error, ec.message());
            return;
        }
        last_received_ = steady::now();
        buffer_.consume(buffer_.size());
        owner_.on_message();
        read();
    }

    void end(EndReason reason, std::string detail) {
        if (ended_) return;
        ended_ = true;
        timer_.cancel();
        owner_.on_down(reason, std::move(detail));
    }

    // A connection that never opened is closed in both modes: there is no stream to leak.
    void fail_opening(std::string detail) {
        if (ended_) return;
        error_code ignored;
        resolver_.cancel();
        beast::get_lowest_layer(ws_).socket().close(ignored);
        end(EndReason::error, std::move(detail));
    }

    void finish() {
        if (finished_) return;
        finished_ = true;
        timer_.cancel();
        error_code ignored;
        beast::get_lowest_layer(ws_).socket().close(ignored);
        if (done_) net::post(timer_.get_executor(), std::move(done_));
    }

    Owner& owner_;
    Ws ws_;
    tcp::resolver resolver_;
    net::steady_timer timer_;
    beast::flat_buffer buffer_;
    std::string peer_;
    Phase phase_ = Phase::opening;
    steady::time_point last_received_{};
    bool ended_ = false;
    bool finished_ = false;
    std::function<void()> done_;
};

using PlainWs = websocket::stream<beast::tcp_stream>;
using SecureWs = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

} // namespace conncheck::ws::detail
