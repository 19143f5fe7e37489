#include "conncheck/ws/collector.hpp"

#include "beast.hpp"
#include "ws_link.hpp"

#include "conncheck/error.hpp"
#include "conncheck/ws/address.hpp"

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/core.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <type_traits>
#include <utility>

namespace conncheck::ws {

const char* end_reason_name(EndReason reason) {
    switch (reason) {
    case EndReason::error:
        return "error";
    case EndReason::eof:
        return "eof";
    case EndReason::close:
        return "close";
    case EndReason::heartbeat_timeout:
        return "heartbeat-timeout";
    }
    return "error";
}

using detail::Link;
using detail::Owner;
using detail::PlainWs;
using detail::SecureWs;
using detail::WsLink;

class Collector::Impl final : public Owner {
public:
    Impl(CollectorConfig config, EventSink sink)
        : config_(std::move(config)), url_(parse_ws_url(config_.url)), sink_(std::move(sink)),
          backoff_(config_.backoff) {
        if (url_.secure) {
            error_code ec;
            ssl_.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                                 net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                                 net::ssl::context::no_tlsv1_1,
                             ec);
            if (!config_.insecure) ssl_.set_default_verify_paths(ec);
            if (ec) throw Error(Errc::io, fmt::format("cannot set up TLS: {}", ec.message()));
        }
    }

    ~Impl() override {
        current_.reset();
        abandoned_.clear();
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    CollectorTotals run(const std::vector<int>& stop_signals) {
        for (const int signal : stop_signals)
            signals_.add(signal);
        if (!stop_signals.empty())
            signals_.async_wait([this](error_code ec, int) {
                if (!ec) stop_now();
            });
        connect_next();
        ioc_.run();
        return totals_;
    }

    void stop() {
        net::post(ioc_, [this] { stop_now(); });
    }

    [[nodiscard]] const CollectorConfig& config() const override { return config_; }
    [[nodiscard]] const WsUrl& url() const override { return url_; }

    void on_up(const std::string& peer) override {
        backoff_.connected();
        CollectorEvent event = make_event(CollectorEvent::Kind::connect);
        event.n = attempts_;
        event.peer = peer;
        sink_(event);
    }

    void on_message() override { ++messages_; }

    void on_down(EndReason reason, std::string detail) override {
        CollectorEvent event = make_event(CollectorEvent::Kind::disconnect);
        event.n = attempts_;
        event.reason = reason;
        event.detail = std::move(detail);
        sink_(event);
        backoff_.disconnected();
        if (config_.leaky) {
            // The incident's bug: the old connection is neither read nor closed.
            current_->abandon();
            if (current_->socket_open()) abandoned_.push_back(current_);
            current_.reset();
            schedule_reconnect();
            return;
        }
        current_->close_then([this] {
            current_.reset();
            schedule_reconnect();
        });
    }

private:
    static CollectorEvent make_event(CollectorEvent::Kind kind) {
        CollectorEvent event;
        event.kind = kind;
        event.at = std::chrono::system_clock::now();
        return event;
    }

    void connect_next() {
        if (stopping_) return;
        ++attempts_;
        if (url_.secure)
            current_ = std::make_shared<WsLink<SecureWs>>(*this, ioc_, ssl_);
        else
            current_ = std::make_shared<WsLink<PlainWs>>(*this, ioc_);
        current_->start();
    }

    void schedule_reconnect() {
        if (stopping_) return;
        const auto delay = backoff_.next_delay();
        ++reconnects_;
        CollectorEvent event = make_event(CollectorEvent::Kind::reconnect);
        event.n = reconnects_;
        event.delay_ms = static_cast<std::uint64_t>(delay.count());
        event.open = open_sockets();
        sink_(event);
        reconnect_timer_.expires_after(delay);
        reconnect_timer_.async_wait([this](error_code ec) {
            if (!ec) connect_next();
        });
    }

    [[nodiscard]] std::size_t open_sockets() const {
        std::size_t open = current_ && current_->socket_open() ? 1 : 0;
        for (const auto& link : abandoned_)
            if (link->socket_open()) ++open;
        return open;
    }

    void stop_now() {
        if (stopping_) return;
        stopping_ = true;
        totals_.messages = messages_;
        totals_.reconnects = reconnects_;
        totals_.open_connections = open_sockets();
        ioc_.stop();
    }

    // Declaration order matters: the links (declared last) go before the io_context they use.
    net::ssl::context ssl_{net::ssl::context::tls_client};
    net::io_context ioc_{1};
    CollectorConfig config_;
    WsUrl url_;
    EventSink sink_;
    Backoff backoff_;
    net::signal_set signals_{ioc_};
    net::steady_timer reconnect_timer_{ioc_};
    std::shared_ptr<Link> current_;
    std::vector<std::shared_ptr<Link>> abandoned_;
    std::uint64_t attempts_ = 0;
    std::uint64_t messages_ = 0;
    std::uint64_t reconnects_ = 0;
    bool stopping_ = false;
    CollectorTotals totals_;
};

Collector::Collector(CollectorConfig config, EventSink sink)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(sink))) {}

Collector::~Collector() = default;

CollectorTotals Collector::run(const std::vector<int>& stop_signals) {
    return impl_->run(stop_signals);
}

void Collector::stop() {
    impl_->stop();
}

} // namespace conncheck::ws
