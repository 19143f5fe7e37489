#include "conncheck/ws/exchange_sim.hpp"

#include "beast.hpp"

#include "conncheck/error.hpp"
#include "conncheck/ws/address.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <fmt/core.h>
#include <optional>
#include <random>
#include <unordered_set>
#include <utility>

namespace conncheck::ws {

const char* fault_name(Fault fault) {
    switch (fault) {
    case Fault::silent:
        return "silent";
    case Fault::fin:
        return "fin";
    case Fault::close:
        return "close";
    case Fault::rst:
        return "rst";
    }
    return "silent";
}

std::vector<Fault> parse_faults(std::string_view list) {
    std::vector<Fault> out;
    std::size_t at = 0;
    while (at <= list.size()) {
        const auto comma = list.find(',', at);
        const auto item = list.substr(at, comma == std::string_view::npos ? list.npos : comma - at);
        if (item.empty()) throw Error(Errc::usage, "an empty fault in the list");
        bool known = false;
        for (const Fault fault : {Fault::silent, Fault::fin, Fault::close, Fault::rst}) {
            if (item == fault_name(fault)) {
                out.push_back(fault);
                known = true;
            }
        }
        if (!known)
            throw Error(Errc::usage,
                        fmt::format("unknown fault '{}' (silent, fin, close, rst)", item));
        if (comma == std::string_view::npos) break;
        at = comma + 1;
    }
    return out;
}

std::string trade_json(double price, double quantity, std::int64_t unix_ms) {
    return fmt::format(R"({{"e":"trade","s":"BTCUSDT","p":"{:.2f}","q":"{:.4f}","T":{}}})", price,
                       quantity, unix_ms);
}

namespace {

constexpr auto handshake_timeout = std::chrono::seconds(10);
// How long a `close` fault waits for the client's close frame before closing TCP anyway.
constexpr auto close_fault_timeout = std::chrono::seconds(5);

class Server {
public:
    virtual ~Server() = default;
    [[nodiscard]] virtual const SimulatorConfig& config() const = 0;
    [[nodiscard]] virtual steady::duration send_interval() const = 0;
    virtual Fault next_fault() = 0;
    virtual std::string next_trade() = 0;
    virtual void opened() = 0;
    virtual void finished(const void* session) = 0;
    virtual void count_fault(Fault fault) = 0;
};

class Session final : public std::enable_shared_from_this<Session> {
public:
    Session(Server& server, tcp::socket socket)
        : server_(server), ws_(std::move(socket)), send_timer_(ws_.get_executor()),
          fault_timer_(ws_.get_executor()) {}

    void start() {
        auto self = shared_from_this();
        fault_timer_.expires_after(handshake_timeout);
        fault_timer_.async_wait([self](error_code ec) {
            if (!ec && !self->upgraded_) self->end();
        });
        ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
            response.set(beast::http::field::server, "conncheck-exchange-sim");
        }));
        ws_.async_accept([self](error_code ec) { self->on_accept(ec); });
    }

    void end() {
        if (ended_) return;
        ended_ = true;
        send_timer_.cancel();
        fault_timer_.cancel();
        error_code ignored;
        socket().close(ignored);
        server_.finished(this);
    }

private:
    tcp::socket& socket() { return ws_.next_layer(); }

    void on_accept(error_code ec) {
        if (ended_) return;
        if (ec) {
            end();
            return;
        }
        upgraded_ = true;
        server_.opened();
        ws_.text(true);
        auto self = shared_from_this();
        fault_timer_.expires_after(server_.config().fault_after);
        fault_timer_.async_wait([self](error_code tec) {
            if (!tec) self->on_fault_due();
        });
        next_send_ = steady::now();
        send_next();
        read();
    }

    // Reads (and discards) what the client sends, so pings and close frames are answered while
    // the stream is healthy.
    void read() {
        ws_.async_read(rx_, [self = shared_from_this()](error_code ec, std::size_t) {
            if (self->ended_ || self->faulted_) return;
            if (ec) {
                self->end(); // the client closed, went away or broke the protocol
                return;
            }
            self->rx_.consume(self->rx_.size());
            self->read();
        });
    }

    void send_next() {
        if (!streaming_ || ended_) return;
        out_ = server_.next_trade();
        writing_ = true;
        ws_.async_write(net::buffer(out_), [self = shared_from_this()](error_code ec, std::size_t) {
            self->on_written(ec);
        });
    }

    void on_written(error_code ec) {
        writing_ = false;
        if (ended_) return;
        if (ec) {
            end();
            return;
        }
        if (pending_fault_) {
            apply(*pending_fault_);
            return;
        }
        if (!streaming_) return;
        next_send_ += server_.send_interval();
        const auto now = steady::now();
        if (next_send_ < now) next_send_ = now; // fell behind: do not burst to catch up
        send_timer_.expires_at(next_send_);
        send_timer_.async_wait([self = shared_from_this()](error_code tec) {
            if (!tec) self->send_next();
        });
    }

    void on_fault_due() {
        if (ended_) return;
        streaming_ = false;
        send_timer_.cancel();
        const Fault fault = server_.next_fault();
        // Never cut a frame in half: wait for the write in flight.
        if (writing_)
            pending_fault_ = fault;
        else
            apply(fault);
    }

    void apply(Fault fault) {
        pending_fault_.reset();
        server_.count_fault(fault);
        error_code ignored;
        switch (fault) {
        case Fault::silent:
            faulted_ = true;
            socket().cancel(ignored); // stop Beast's reader: it would answer pings and close frames
            drain();
            break;
        case Fault::fin:
            faulted_ = true;
            socket().cancel(ignored);
            // FIN without a close frame. The socket stays open and keeps reading: close() with
            // unread bytes queued, or bytes arriving after close(), would make the kernel send RST.
            socket().shutdown(tcp::socket::shutdown_send, ignored);
            drain();
            break;
        case Fault::close: {
            auto self = shared_from_this();
            fault_timer_.expires_after(close_fault_timeout);
            fault_timer_.async_wait([self](error_code ec) {
                if (!ec) self->end();
            });
            // The pending read takes the client's close reply; Beast then closes TCP.
            ws_.async_close(websocket::close_code::going_away, [self](error_code) { self->end(); });
            break;
        }
        case Fault::rst:
            faulted_ = true;
            // Linger on with a zero timeout: close() discards the send queue and sends RST.
            socket().set_option(net::socket_base::linger(true, 0), ignored);
            end();
            break;
        }
    }

    // Reads raw bytes and throws them away until the client closes: answers nothing, but notices
    // when the client finally lets go, and then closes without a reset.
    void drain() {
        socket().async_read_some(net::buffer(drain_buf_),
                                 [self = shared_from_this()](error_code ec, std::size_t) {
                                     if (self->ended_) return;
                                     if (ec) {
                                         self->end();
                                         return;
                                     }
                                     self->drain();
                                 });
    }

    Server& server_;
    websocket::stream<tcp::socket> ws_;
    net::steady_timer send_timer_;
    net::steady_timer fault_timer_;
    beast::flat_buffer rx_;
    std::array<char, 4096> drain_buf_{};
    std::string out_;
    steady::time_point next_send_{};
    std::optional<Fault> pending_fault_;
    bool upgraded_ = false;
    bool streaming_ = true;
    bool writing_ = false;
    bool faulted_ = false;
    bool ended_ = false;
};

} // namespace

class ExchangeSim::Impl final : public Server {
public:
    Impl(SimulatorConfig config, Log log) : config_(std::move(config)), log_(std::move(log)) {
        if (!(config_.rate > 0 && config_.rate <= 100'000))
            throw Error(Errc::usage, fmt::format("the rate must be more than 0 and at most 100000 "
                                                 "messages per second, not {}",
                                                 config_.rate));
        if (config_.faults.empty())
            throw Error(Errc::usage, "the simulator needs at least one fault");
        interval_ = std::chrono::duration_cast<steady::duration>(
            std::chrono::duration<double>(1.0 / config_.rate));
        error_code ec;
        tcp::resolver resolver(ioc_);
        const auto results = resolver.resolve(config_.host, std::to_string(config_.port),
                                              tcp::resolver::passive, ec);
        if (ec || results.empty())
            throw Error(Errc::usage, fmt::format("cannot resolve the listen host '{}': {}",
                                                 config_.host, ec.message()));
        const tcp::endpoint endpoint = *results.begin();
        const auto where = join_host_port(endpoint.address().to_string(), endpoint.port());
        acceptor_.open(endpoint.protocol(), ec);
        if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
        if (!ec) acceptor_.bind(endpoint, ec);
        if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
        if (ec) throw Error(Errc::io, fmt::format("cannot listen on {}: {}", where, ec.message()));
        bound_ = acceptor_.local_endpoint();
    }

    ~Impl() override { sessions_.clear(); }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    [[nodiscard]] std::string bound_address() const {
        return join_host_port(bound_.address().to_string(), bound_.port());
    }
    [[nodiscard]] bool loopback() const { return bound_.address().is_loopback(); }

    SimulatorStats run(const std::vector<int>& stop_signals) {
        for (const int signal : stop_signals)
            signals_.add(signal);
        if (!stop_signals.empty())
            signals_.async_wait([this](error_code ec, int) {
                if (!ec) stop_now();
            });
        accept();
        ioc_.run();
        return stats_;
    }

    void stop() {
        net::post(ioc_, [this] { stop_now(); });
    }

    [[nodiscard]] const SimulatorConfig& config() const override { return config_; }
    [[nodiscard]] steady::duration send_interval() const override { return interval_; }
    Fault next_fault() override { return config_.faults[fault_counter_++ % config_.faults.size()]; }

    std::string next_trade() override {
        // A bounded random walk, so the numbers look like a market without drifting off.
        price_ = std::clamp(price_ + step_(random_), 40'000.0, 90'000.0);
        ++stats_.messages;
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        return trade_json(price_, std::round(size_(random_) * 10'000) / 10'000,
                          std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
    }

    void opened() override { ++stats_.connections; }
    void count_fault(Fault fault) override { ++stats_.faults[static_cast<int>(fault)]; }

    void finished(const void* session) override {
        // Erasing may destroy the session while its handler runs: defer to a fresh handler.
        net::post(ioc_, [this, session] {
            for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
                if (it->get() == session) {
                    sessions_.erase(it);
                    return;
                }
            }
        });
    }

private:
    void accept() {
        acceptor_.async_accept(ioc_, [this](error_code ec, tcp::socket socket) {
            if (stopping_) return;
            if (ec) {
                // EMFILE and friends: say so once, back off briefly, keep serving.
                if (ec != last_accept_error_) log_(fmt::format("accept: {}", ec.message()));
                last_accept_error_ = ec;
                retry_timer_.expires_after(std::chrono::milliseconds(100));
                retry_timer_.async_wait([this](error_code tec) {
                    if (!tec) accept();
                });
                return;
            }
            last_accept_error_ = {};
            error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            auto session = std::make_shared<Session>(*this, std::move(socket));
            sessions_.insert(session);
            session->start();
            accept();
        });
    }

    void stop_now() {
        if (stopping_) return;
        stopping_ = true;
        error_code ignored;
        acceptor_.close(ignored);
        stats_.open = sessions_.size();
        ioc_.stop();
    }

    net::io_context ioc_{1};
    SimulatorConfig config_;
    Log log_;
    tcp::acceptor acceptor_{ioc_};
    tcp::endpoint bound_;
    net::signal_set signals_{ioc_};
    net::steady_timer retry_timer_{ioc_};
    steady::duration interval_{};
    std::unordered_set<std::shared_ptr<Session>> sessions_;
    std::size_t fault_counter_ = 0;
    std::mt19937_64 random_{std::random_device{}()};
    std::normal_distribution<double> step_{0.0, 4.0};
    std::uniform_real_distribution<double> size_{0.0001, 0.5};
    double price_ = 64'000.0;
    error_code last_accept_error_;
    bool stopping_ = false;
    SimulatorStats stats_;
};

ExchangeSim::ExchangeSim(SimulatorConfig config, Log log)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(log))) {}

ExchangeSim::~ExchangeSim() = default;

std::string ExchangeSim::bound_address() const {
    return impl_->bound_address();
}
bool ExchangeSim::loopback() const {
    return impl_->loopback();
}

SimulatorStats ExchangeSim::run(const std::vector<int>& stop_signals) {
    return impl_->run(stop_signals);
}

void ExchangeSim::stop() {
    impl_->stop();
}

} // namespace conncheck::ws
