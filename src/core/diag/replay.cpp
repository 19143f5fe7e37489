#include "conncheck/diag/replay.hpp"

#include "conncheck/diag/dump_loop.hpp"
#include "conncheck/diag/parse.hpp"
#include "conncheck/error.hpp"
#include "conncheck/files.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace conncheck::diag {

namespace {

std::uint32_t read_le32(const std::string& bytes, std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        v |= std::uint32_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    }
    return v;
}

// A recording is read whole, so its size is bounded. The bound is far above what one scan of a
// busy host records (about 400 bytes per socket with tcp_info: 45 MB for 109k sockets).
constexpr std::size_t max_recording_bytes = std::size_t{256} << 20;

std::string read_whole_file(const std::string& path) {
    return files::read_input(path, "recording", max_recording_bytes);
}

// True when some well-formed message of the datagram satisfies `pred`; the walk stops at the
// first malformed length.
template <typename Pred> bool any_message(const char* data, std::size_t size, Pred pred) {
    std::size_t at = 0;
    while (size - at >= sizeof(nlmsghdr)) {
        nlmsghdr h;
        std::memcpy(&h, data + at, sizeof h);
        if (h.nlmsg_len < sizeof h || h.nlmsg_len > size - at) return false;
        if (pred(h)) return true;
        at += NLMSG_ALIGN(h.nlmsg_len);
        if (at >= size) return false;
    }
    return false;
}

// The datagram holds the NLMSG_DONE or NLMSG_ERROR that ends a dump attempt.
bool ends_attempt(const char* data, std::size_t size) {
    return any_message(data, size, [](const nlmsghdr& h) {
        return h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_ERROR;
    });
}

// A message of the datagram carries NLM_F_DUMP_INTR: the attempt was retried.
bool interrupted(const char* data, std::size_t size) {
    return any_message(data, size,
                       [](const nlmsghdr& h) { return (h.nlmsg_flags & NLM_F_DUMP_INTR) != 0; });
}

struct Record {
    std::size_t offset; // of the datagram bytes
    std::size_t size;
};

// The kernel answers a state request with exactly those states; a recording holds whatever was
// asked when it was made, so the replay filters here. Request sockets are reported as SYN_RECV
// but selected by NEW_SYN_RECV.
class FilterSink final : public DumpSink {
public:
    FilterSink(const DumpRequest& request, DumpSink& inner) : request_(request), inner_(inner) {}
    void on_socket(const SocketRecord& socket) override {
        std::uint32_t wanted = state_bit(socket.state);
        if (socket.state == TcpState::syn_recv) wanted |= state_bit(TcpState::new_syn_recv);
        if ((request_.states & wanted) == 0) return;
        if ((request_.want_info || !socket.info) && (request_.want_mem || !socket.mem)) {
            inner_.on_socket(socket);
            return;
        }
        SocketRecord trimmed = socket;
        if (!request_.want_info) trimmed.info.reset();
        if (!request_.want_mem) trimmed.mem.reset();
        inner_.on_socket(trimmed);
    }
    void on_restart() override { inner_.on_restart(); }

private:
    const DumpRequest& request_;
    DumpSink& inner_;
};

class ReplaySource final : public SocketSource, private detail::DatagramStream {
public:
    ReplaySource(std::string path, std::string bytes)
        : path_(std::move(path)), bytes_(std::move(bytes)) {
        index();
    }

    DumpStats dump(const DumpRequest& request, DumpSink& sink) override {
        // A recording holds several dumps per family (the scanner asks for the live states, then
        // TIME_WAIT): the k-th request for a family is answered by the k-th recorded dump, which
        // is how the scanner replays its own recording; after the last it starts over (watch).
        // Within a dump the recording decides how many attempts there were: replay all of them.
        FilterSink filter(request, sink);
        const bool v6 = request.family == AF_INET6;
        const auto& dumps = v6 ? dumps6_ : dumps4_;
        if (dumps.empty()) return detail::run_dump(*this, request, filter, UINT_MAX);
        const std::size_t k = requests_[v6]++ % dumps.size();
        base_ = dumps[k];
        end_ = k + 1 < dumps.size() ? dumps[k + 1] : (v6 ? inet6_ : inet_).size();
        return detail::run_dump(*this, request, filter, UINT_MAX);
    }
    [[nodiscard]] SourceKind kind() const override { return SourceKind::replay; }

private:
    void index() {
        const std::size_t magic_len = recording_magic.size();
        if (bytes_.size() < magic_len || bytes_.compare(0, magic_len, recording_magic) != 0) {
            throw Error(Errc::bad_file, path_ + ": not a conncheck netlink recording");
        }
        std::size_t at = magic_len;
        while (at < bytes_.size()) {
            if (bytes_.size() - at < 8) truncated(at);
            const std::uint32_t family = read_le32(bytes_, at);
            const std::uint32_t size = read_le32(bytes_, at + 4);
            if (family != AF_INET && family != AF_INET6) {
                throw Error(Errc::bad_file, path_ +
                                                ": not a conncheck netlink recording (bad "
                                                "record at byte " +
                                                std::to_string(at) + ")");
            }
            if (bytes_.size() - at - 8 < size) truncated(at);
            const Record r{at + 8, size};
            const bool v6 = family == AF_INET6;
            auto& attempts = v6 ? inet6_ : inet_;
            if (attempts.empty() || attempt_closed_[v6]) {
                // A new attempt starts a new dump unless the previous attempt was interrupted.
                if (!last_interrupted_[v6]) (v6 ? dumps6_ : dumps4_).push_back(attempts.size());
                attempts.emplace_back();
                last_interrupted_[v6] = false;
            }
            attempts.back().push_back(r);
            attempt_closed_[v6] = ends_attempt(bytes_.data() + r.offset, r.size);
            if (interrupted(bytes_.data() + r.offset, r.size)) last_interrupted_[v6] = true;
            at = r.offset + size;
        }
    }

    [[noreturn]] void truncated(std::size_t at) const {
        throw Error(Errc::bad_file, path_ + ": truncated at byte " + std::to_string(at));
    }

    bool begin(const DumpRequest& request, unsigned attempt, std::uint32_t& seq,
               std::uint32_t& portid) override {
        const auto& attempts = request.family == AF_INET6 ? inet6_ : inet_;
        if (request.family != AF_INET && request.family != AF_INET6) return false;
        const std::size_t end = std::min(end_, attempts.size());
        if (base_ + attempt >= end) return false;
        current_ = &attempts[base_ + attempt];
        next_ = 0;
        seq = 0;
        portid = 0;
        return true;
    }

    detail::Datagram next() override {
        if (current_ == nullptr || next_ >= current_->size()) return {nullptr, 0, false, true};
        const Record& r = (*current_)[next_++];
        return {bytes_.data() + r.offset, r.size, false, false};
    }

    [[nodiscard]] std::string describe() const override { return path_; }

    std::string path_;
    std::string bytes_;
    // Per family, the recorded dump attempts: datagrams up to one ending in DONE or ERROR.
    std::vector<std::vector<Record>> inet_;
    std::vector<std::vector<Record>> inet6_;
    bool attempt_closed_[2] = {false, false};
    bool last_interrupted_[2] = {false, false};
    // Per family, the first attempt of each recorded dump; a dump is its interrupted attempts and
    // the retry that completed it.
    std::vector<std::size_t> dumps4_;
    std::vector<std::size_t> dumps6_;
    std::size_t requests_[2] = {0, 0};
    std::size_t base_ = 0; // attempts [base_, end_) make the dump being replayed
    std::size_t end_ = SIZE_MAX;
    const std::vector<Record>* current_ = nullptr;
    std::size_t next_ = 0;
};

} // namespace

std::unique_ptr<SocketSource> open_replay(const std::string& path) {
    std::string bytes = read_whole_file(path);
    return std::make_unique<ReplaySource>(path, std::move(bytes));
}

} // namespace conncheck::diag
