// The scanner's ways to a process's sockets must agree socket for socket: the targeted one
// (a dump without extensions, filtered to the process's cgroup when it has its own, then exact
// requests) and whole-table dumps. The population: a process holding sockets in every state it
// can hold still on loopback, both families, in a cgroup of its own, and a second process in a
// network namespace of its own.
#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/scan/fd_walk.hpp"

#include "support.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <map>
#include <memory>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace conncheck;
using namespace testsupport;
using namespace std::chrono_literals;

namespace {

// Closes the sockets a forked child inherited, so it holds only what it makes itself.
void close_inherited_sockets() {
    for (int fd = 3; fd < 1024; ++fd) {
        struct stat st {};
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) close(fd);
    }
}

// Closes the fds at the end of a test, however it ends.
struct Fds {
    std::vector<int> fds;
    Fds() = default;
    Fds(const Fds&) = delete;
    Fds& operator=(const Fds&) = delete;
    ~Fds() {
        for (int fd : fds)
            close(fd);
    }
};

// Moves the calling process into `dir` (a cgroup v2 directory); false when it cannot.
bool join_cgroup(const std::string& dir) {
    const std::string procs = dir + "/cgroup.procs";
    const int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = write(fd, "0", 1) == 1;
    close(fd);
    return ok;
}

int connect_nonblocking(const Listener& l) {
    const int fd = socket(l.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l.family == AF_INET) {
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(l.port);
        sin.sin_addr.s_addr = htonl(l.addr4);
        (void)connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
    } else {
        sockaddr_in6 sin6{};
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(l.port);
        sin6.sin6_addr = in6addr_loopback;
        (void)connect(fd, reinterpret_cast<sockaddr*>(&sin6), sizeof sin6);
    }
    return fd;
}

// The body of the main target: every state a process can hold still on loopback. The parent
// holds the far ends (see build_far_ends).
struct Target {
    Listener est4, est6, drop, fin, full, zero;
};

void hold_every_state(const Target& t) {
    // Own listeners, both families, and a socket bound but never listening or connected.
    (void)listen_loopback(AF_INET);
    (void)listen_loopback(AF_INET6);
    const int bound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)bind(bound, reinterpret_cast<sockaddr*>(&any), sizeof any);
    for (int i = 0; i < 3; ++i)
        (void)connect_to(t.est4); // ESTABLISHED
    for (int i = 0; i < 2; ++i)
        (void)connect_to(t.est6);
    for (int i = 0; i < 2; ++i)
        (void)connect_to(t.drop);         // the parent closes these: CLOSE_WAIT here
    shutdown(connect_to(t.fin), SHUT_WR); // FIN_WAIT2: the parent never closes its end
    connect_then_close(t.est4, 2);        // TIME_WAIT here once the parent closes too
    // The parent's listener with backlog 0 takes one connection; its SYN queue then drops the
    // next SYN, which stays SYN_SENT, retrying.
    (void)connect_to(t.full);
    (void)connect_nonblocking(t.full);
    // FIN_WAIT1: the FIN waits behind data the parent never reads, against a zero window.
    const int stuck = connect_to(t.zero);
    const int small = 4096;
    setsockopt(stuck, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    fcntl(stuck, F_SETFL, O_NONBLOCK);
    char block[4096] = {};
    while (write(stuck, block, sizeof block) > 0) {
    }
    shutdown(stuck, SHUT_WR);
}

// The second namespace's process: its own loopback, with both ends of its connections.
void hold_in_own_netns() {
    if (unshare(CLONE_NEWNET) != 0) _exit(77);
    const int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (ioctl(ctl, SIOCGIFFLAGS, &ifr) != 0) _exit(1);
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (ioctl(ctl, SIOCSIFFLAGS, &ifr) != 0) _exit(1);
    close(ctl);
    const Listener l4 = listen_loopback(AF_INET);
    const Listener l6 = listen_loopback(AF_INET6);
    for (int i = 0; i < 2; ++i) {
        (void)connect_to(l4);
        (void)accept_from(l4);
        (void)connect_to(l6);
        (void)accept_from(l6);
    }
    // CLOSE_WAIT on one end, FIN_WAIT2 on the other, both held.
    const int c = connect_to(l4);
    const int a = accept_from(l4);
    (void)a;
    shutdown(c, SHUT_WR);
}

struct Pair {
    const SocketRecord* targeted = nullptr;
    const SocketRecord* whole = nullptr;
};

// Compares one process's sockets from the two scans; `elapsed_ms` bounds how far idle times
// may have moved between them.
void compare_process(const scan::ProcessSnapshot& a, const scan::ProcessSnapshot& b,
                     std::uint32_t elapsed_ms) {
    INFO("pid " << a.info.pid);
    CHECK(a.sockets.size() == b.sockets.size());
    CHECK(a.time_wait_exact == b.time_wait_exact);
    CHECK(a.time_wait_by_peer.size() == b.time_wait_by_peer.size());
    std::map<std::uint64_t, Pair> by_cookie;
    for (const auto& s : a.sockets)
        by_cookie[s.cookie].targeted = &s;
    for (const auto& s : b.sockets)
        by_cookie[s.cookie].whole = &s;
    for (const auto& entry : by_cookie) {
        // Not a structured binding: INFO captures it in a lambda, which clang 14 refuses.
        const auto cookie = entry.first;
        const auto& pair = entry.second;
        INFO("cookie " << cookie);
        REQUIRE(pair.targeted != nullptr);
        REQUIRE(pair.whole != nullptr);
        const SocketRecord& x = *pair.targeted;
        const SocketRecord& y = *pair.whole;
        CHECK(x.state == y.state);
        CHECK(x.inode == y.inode);
        CHECK(x.local == y.local);
        CHECK(x.remote == y.remote);
        CHECK(x.rqueue == y.rqueue);
        CHECK(x.info.has_value() == y.info.has_value());
        CHECK(x.mem.has_value() == y.mem.has_value());
        if (x.info && y.info) {
            // A socket may still be sending between the two scans (the FIN_WAIT1 one, as its
            // peer's window opens): what it was given to send, acknowledged or queued, is fixed.
            CHECK(x.wqueue + x.info->bytes_acked == y.wqueue + y.info->bytes_acked);
            const auto close_to = [elapsed_ms](std::uint32_t u, std::uint32_t v) {
                return (u > v ? u - v : v - u) <= elapsed_ms + 50;
            };
            CHECK(close_to(x.info->last_data_recv_ms, y.info->last_data_recv_ms));
            CHECK(close_to(x.info->last_data_sent_ms, y.info->last_data_sent_ms));
            CHECK(close_to(x.info->last_ack_recv_ms, y.info->last_ack_recv_ms));
            CHECK(x.info->bytes_received == y.info->bytes_received);
        } else {
            CHECK(x.wqueue == y.wqueue);
        }
        if (x.mem && y.mem) CHECK(x.mem->rcvbuf == y.mem->rcvbuf);
    }
}

std::size_t count_state(const scan::ProcessSnapshot& p, TcpState state) {
    return static_cast<std::size_t>(
        std::count_if(p.sockets.begin(), p.sockets.end(),
                      [state](const SocketRecord& s) { return s.state == state; }));
}

// A cgroup v2 directory of our own, removed (once empty) at the end.
class TestCgroup {
public:
    TestCgroup() {
        proc::ProcFs procfs;
        const auto mount = procfs.cgroup2_mount();
        if (!mount) return;
        const std::string dir =
            mount->mount_point + "/conncheck-test-" + std::to_string(::getpid());
        if (mkdir(dir.c_str(), 0755) == 0) dir_ = dir;
    }
    ~TestCgroup() {
        if (!dir_.empty()) rmdir(dir_.c_str());
    }
    TestCgroup(const TestCgroup&) = delete;
    TestCgroup& operator=(const TestCgroup&) = delete;
    [[nodiscard]] const std::string& dir() const { return dir_; }

private:
    std::string dir_;
};

// `pending_sockets`: how many sockets the first dump may hold while the fd tables are read
// (0: it waits for them at its first socket).
scan::Snapshot scan_with(bool targeted, const std::vector<pid_t>& pids,
                         std::size_t pending_sockets = scan::Config{}.pending_sockets) {
    scan::Config config;
    config.targeted = targeted;
    config.pending_sockets = pending_sockets;
    scan::Scanner scanner(config);
    return scanner.scan_pids(pids);
}

} // namespace

TEST_CASE("targeted and whole-table scans agree socket for socket") {
    TestCgroup cgroup;
    if (cgroup.dir().empty()) {
        WARN_MESSAGE(false,
                     "skipped: cannot create a cgroup v2 directory (needs root and cgroup2)");
        return;
    }
    Target t{listen_loopback(AF_INET), listen_loopback(AF_INET6),   listen_loopback(AF_INET),
             listen_loopback(AF_INET), listen_loopback(AF_INET, 0), listen_loopback(AF_INET)};
    Fds keep;
    for (const Listener* l : {&t.est4, &t.est6, &t.drop, &t.fin, &t.full, &t.zero})
        keep.fds.push_back(l->fd);
    const int tiny = 4096;
    setsockopt(t.zero.fd, SOL_SOCKET, SO_RCVBUF, &tiny, sizeof tiny); // inherited by accepts
    const std::string cg = cgroup.dir();
    Child target([&] {
        close_inherited_sockets();
        if (!join_cgroup(cg)) _exit(1);
        hold_every_state(t);
    });
    std::unique_ptr<Child> other;
    try {
        other = std::make_unique<Child>([] {
            close_inherited_sockets();
            hold_in_own_netns();
        });
    } catch (const std::exception&) {
        WARN_MESSAGE(false, "skipped: cannot create a network namespace (needs root)");
        return;
    }

    // The far ends: keep the ESTABLISHED ones, close the dropped ones (CLOSE_WAIT there) and
    // the ones the target closed first (TIME_WAIT there); leave `fin` and `zero` unread.
    for (int fd : close_the_closed(accept_all(t.est4, 5), 2))
        keep.fds.push_back(fd);
    for (int i = 0; i < 2; ++i)
        keep.fds.push_back(accept_from(t.est6));
    for (int i = 0; i < 2; ++i)
        close(accept_from(t.drop));
    keep.fds.push_back(accept_from(t.fin));
    keep.fds.push_back(accept_from(t.zero));

    const std::vector<pid_t> pids{target.pid(), other->pid()};
    scan::Snapshot whole;
    const bool settled = wait_until(
        [&] {
            whole = scan_with(false, pids);
            const auto& p = whole.processes.at(0);
            // The TIME_WAIT the kernel keeps of the two closed (see kernel_time_wait_toward).
            const std::size_t time_wait = kernel_time_wait_toward(t.est4);
            return count_state(p, TcpState::close_wait) == 2 && time_wait >= 1 &&
                   p.time_wait_by_peer.size() == time_wait &&
                   count_state(p, TcpState::fin_wait2) == 1 &&
                   count_state(p, TcpState::fin_wait1) == 1 &&
                   count_state(p, TcpState::syn_sent) == 1;
        },
        20s);
    if (!settled) {
        const auto& p = whole.processes.at(0);
        for (const auto& sock : p.sockets)
            MESSAGE(state_name(sock.state)
                    << " " << sock.local.to_string() << " -> " << sock.remote.to_string());
    }
    REQUIRE(settled);
    // Held until the fd tables are read, waiting for them at once, or holding one socket.
    for (const std::size_t pending :
         {scan::Config{}.pending_sockets, std::size_t{0}, std::size_t{1}}) {
        CAPTURE(pending);
        const auto started = std::chrono::steady_clock::now();
        const scan::Snapshot targeted = scan_with(true, pids, pending);
        const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - started);
        const auto again = scan_with(false, pids);

        REQUIRE(targeted.processes.size() == 2);
        REQUIRE(again.processes.size() == 2);
        const auto& main_target = targeted.processes[0];
        CHECK(count_state(main_target, TcpState::listen) == 2);
        CHECK(count_state(main_target, TcpState::established) == 6); // est4, est6, full
        CHECK(count_state(targeted.processes[1], TcpState::established) == 8);
        CHECK(count_state(targeted.processes[1], TcpState::close_wait) == 1);
        CHECK(count_state(targeted.processes[1], TcpState::fin_wait2) == 1);
        for (std::size_t i = 0; i < 2; ++i)
            compare_process(targeted.processes[i], again.processes[i],
                            static_cast<std::uint32_t>(elapsed.count() + 1000));
        // The kernel filtered the first process's dump to its cgroup: the parent's far ends,
        // in another cgroup, never reached us.
        CHECK(targeted.sockets_seen < again.sockets_seen);
    }
}

TEST_CASE("a socket from before the move to a cgroup is still found") {
    TestCgroup cgroup;
    if (cgroup.dir().empty()) {
        WARN_MESSAGE(false,
                     "skipped: cannot create a cgroup v2 directory (needs root and cgroup2)");
        return;
    }
    const Listener l = listen_loopback(AF_INET);
    Fds keep;
    keep.fds.push_back(l.fd);
    const int inherited = connect_to(l); // created here, in our cgroup
    keep.fds.push_back(accept_from(l));
    const std::string cg = cgroup.dir();
    Child target([&] {
        // Keep only the inherited connection, then make one from the new cgroup.
        for (int fd = 3; fd < 1024; ++fd) {
            struct stat st {};
            if (fd != inherited && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) close(fd);
        }
        if (!join_cgroup(cg)) _exit(1);
        (void)connect_to(l);
    });
    keep.fds.push_back(accept_from(l));
    close(inherited); // the child's copy keeps it open
    const auto targeted = scan_with(true, {target.pid()});
    const auto whole = scan_with(false, {target.pid()});
    REQUIRE(targeted.processes.size() == 1);
    CHECK(count_state(targeted.processes[0], TcpState::established) == 2);
    compare_process(targeted.processes[0], whole.processes[0], 1000);
}

TEST_CASE("a bound-only socket is found without a cgroup filter") {
    // In the root cgroup the targeted scan has no cgroup to filter on; its first dump leaves
    // out bound-only sockets (a walk of the bind table) and asks for them once it misses one.
    proc::ProcFs procfs;
    const auto mount = procfs.cgroup2_mount();
    if (!mount) {
        WARN_MESSAGE(false, "skipped: no cgroup2 mount");
        return;
    }
    const Listener l = listen_loopback(AF_INET);
    Fds keep;
    keep.fds.push_back(l.fd);
    const std::string root = mount->mount_point;
    std::unique_ptr<Child> target;
    try {
        target = std::make_unique<Child>([&] {
            close_inherited_sockets();
            if (!join_cgroup(root)) _exit(1);
            const int bound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in any{};
            any.sin_family = AF_INET;
            any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (bind(bound, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) _exit(1);
            (void)connect_to(l);
        });
    } catch (const std::exception&) {
        WARN_MESSAGE(false, "skipped: cannot move a process to the root cgroup");
        return;
    }
    keep.fds.push_back(accept_from(l));
    const auto targeted = scan_with(true, {target->pid()});
    const auto whole = scan_with(false, {target->pid()});
    REQUIRE(targeted.processes.size() == 1);
    CHECK(count_state(targeted.processes[0], TcpState::established) == 1);
    CHECK(count_state(targeted.processes[0], TcpState::close) == 1);
    CHECK(targeted.processes[0].other_sockets.tcp == 0);
    compare_process(targeted.processes[0], whole.processes[0], 1000);
}

namespace {

// A child holding connections to `l` that closes its newest one ('x') or opens another ('n')
// on command, and answers each command once it is done. Not a Child: its body never returns.
class CommandedClient {
public:
    explicit CommandedClient(const Listener& l) {
        REQUIRE(pipe2(commands_, O_CLOEXEC) == 0);
        REQUIRE(pipe2(done_, O_CLOEXEC) == 0);
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            close_inherited_sockets();
            int held[16];
            int count = 0;
            for (; count < 4; ++count)
                held[count] = connect_to(l);
            char c = 0;
            while (read(commands_[0], &c, 1) == 1) {
                if (c == 'x' && count > 0) close(held[--count]);
                if (c == 'n' && count < 16) held[count++] = connect_to(l);
                if (write(done_[1], &c, 1) != 1) _exit(1);
            }
            _exit(0);
        }
    }
    ~CommandedClient() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        for (int fd : {commands_[0], commands_[1], done_[0], done_[1]})
            close(fd);
    }
    CommandedClient(const CommandedClient&) = delete;
    CommandedClient& operator=(const CommandedClient&) = delete;

    void command(char c) {
        REQUIRE(write(commands_[1], &c, 1) == 1);
        char answer = 0;
        REQUIRE(read(done_[0], &answer, 1) == 1);
    }
    [[nodiscard]] pid_t pid() const { return pid_; }

private:
    int commands_[2] = {-1, -1};
    int done_[2] = {-1, -1};
    pid_t pid_ = -1;
};

} // namespace

TEST_CASE("a quiet scan asks for the sockets alone while nothing else can have changed") {
    const Listener l = listen_loopback(AF_INET);
    Fds far;
    far.fds.push_back(l.fd);
    CommandedClient client(l);
    for (int i = 0; i < 4; ++i)
        far.fds.push_back(accept_from(l));
    const std::vector<pid_t> pids{client.pid()};
    const auto full = [&] { return scan_with(true, pids); };

    scan::Scanner scanner(scan::Config{});
    scanner.keep_last_walk(true);
    const scan::Snapshot first = scanner.scan_pids(pids);
    CHECK(first.walked);
    REQUIRE(count_state(first.processes.at(0), TcpState::established) == 4);

    // Same fds, all connected: no walk, and the same answer as one.
    const auto started = std::chrono::steady_clock::now();
    const scan::Snapshot quiet = scanner.scan_pids(pids, true);
    const scan::Snapshot walked = full();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    CHECK_FALSE(quiet.walked);
    compare_process(quiet.processes.at(0), walked.processes.at(0),
                    static_cast<std::uint32_t>(elapsed.count() + 1000));
    // Without the caller's word, a scan walks.
    CHECK(scanner.scan_pids(pids).walked);

    // The peer closes one: its new state comes from the exact request.
    close(far.fds.back()); // the child's newest
    far.fds.pop_back();
    REQUIRE(wait_until(
        [&] { return count_state(full().processes.at(0), TcpState::close_wait) == 1; }, 10s));
    const scan::Snapshot after_fin = scanner.scan_pids(pids, true);
    CHECK_FALSE(after_fin.walked);
    CHECK(count_state(after_fin.processes.at(0), TcpState::close_wait) == 1);
    CHECK(count_state(after_fin.processes.at(0), TcpState::established) == 3);

    // The child closes that one: walks while it drains in LAST_ACK, quiet scans once it is
    // gone. Then it opens another: other fds, a walk.
    client.command('x');
    CHECK(scanner.scan_pids(pids, true).walked);
    REQUIRE(wait_until(
        [&] {
            (void)scanner.scan_pids(pids);
            return !scanner.scan_pids(pids, true).walked;
        },
        10s));
    client.command('n');
    far.fds.push_back(accept_from(l));
    const scan::Snapshot after_open = scanner.scan_pids(pids, true);
    CHECK(after_open.walked);
    CHECK(count_state(after_open.processes.at(0), TcpState::established) == 4);
    CHECK_FALSE(scanner.scan_pids(pids, true).walked);

    // A reset socket leaves the kernel's tables while its fd stays: an exact request misses it,
    // so a walk, which finds it in no table; while it is held every scan walks.
    const linger abort_now{1, 0};
    setsockopt(far.fds.back(), SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now);
    close(far.fds.back()); // the child's newest again
    far.fds.pop_back();
    REQUIRE(wait_until([&] { return full().processes.at(0).held_after_close.size() == 1; }, 10s));
    const scan::Snapshot after_reset = scanner.scan_pids(pids, true);
    CHECK(after_reset.walked);
    CHECK(after_reset.processes.at(0).held_after_close.size() == 1);
    CHECK(after_reset.processes.at(0).other_sockets.tcp == 0);
    CHECK(count_state(after_reset.processes.at(0), TcpState::established) == 3);
    CHECK(scanner.scan_pids(pids, true).walked);
    client.command('x');
    CHECK(scanner.scan_pids(pids, true).walked);
    CHECK_FALSE(scanner.scan_pids(pids, true).walked);

    // A socket the child closes while its peer holds on drains in FIN_WAIT2, then TIME_WAIT:
    // every scan walks, and the TIME_WAIT is the child's, by cookie.
    client.command('x');
    CHECK(scanner.scan_pids(pids, true).walked);
    CHECK(scanner.scan_pids(pids, true).walked);
    close(far.fds.back());
    far.fds.pop_back();
    REQUIRE(wait_until(
        [&] { return scanner.scan_pids(pids, true).processes.at(0).time_wait_exact == 1; }, 10s));
    CHECK(scanner.scan_pids(pids, true).walked);
}

TEST_CASE("the kernel's fd-table iterator reads the tables /proc shows, fd for fd") {
    if (!scan::kernel_fd_tables()) {
        WARN_MESSAGE(false, "skipped: no eBPF task_file iterator here (needs root and BTF)");
        return;
    }
    // Sockets of three kinds among other files, in a table with a hole, and a thread with a
    // table of its own (unshare(CLONE_FILES)), which /proc/PID/fd does not show.
    const Listener l = listen_loopback(AF_INET);
    Child holder([&] {
        close_inherited_sockets();
        const int null = open("/dev/null", O_RDWR);
        for (int fd = 0; fd < 3; ++fd)
            dup2(null, fd); // a test runner's stdout may be a socket
        close(null);
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) _exit(1);
        (void)connect_to(l);
        (void)socket(AF_INET, SOCK_DGRAM, 0);
        (void)open("/dev/null", O_RDONLY);
        close(pair[0]);
        static std::atomic<bool> unshared{false};
        std::thread([] {
            if (unshare(CLONE_FILES) != 0) _exit(1);
            (void)socket(AF_INET, SOCK_STREAM, 0);
            unshared = true;
            for (;;)
                pause();
        }).detach();
        while (!unshared)
            sched_yield();
    });
    Fds keep;
    keep.fds = {l.fd, accept_from(l)};

    proc::ProcFs procfs;
    const auto kernel = scan::kernel_fd_tables();
    REQUIRE(kernel);
    const auto found = std::find_if(kernel->begin(), kernel->end(),
                                    [&](const auto& table) { return table.first == holder.pid(); });
    REQUIRE(found != kernel->end());
    const auto from_proc = procfs.scan_fds(holder.pid());
    CHECK(from_proc.socket_inodes.size() == 3);
    CHECK(found->second.socket_inodes == from_proc.socket_inodes);
    CHECK(found->second.socket_fds == from_proc.socket_fds);
    CHECK(found->second.open_fds == from_proc.open_fds);
    CHECK(std::is_sorted(kernel->begin(), kernel->end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; }));

    // Host-wide, the processes the iterator leaves out come from /proc: here a zombie, which
    // has no table left (nor has a kernel thread; a security module may hide others).
    const pid_t zombie = fork();
    REQUIRE(zombie >= 0);
    if (zombie == 0) _exit(0);
    const struct Reap {
        pid_t pid;
        ~Reap() { waitpid(pid, nullptr, 0); }
    } reap{zombie};
    siginfo_t exited{};
    REQUIRE(waitid(P_PID, static_cast<id_t>(zombie), &exited, WEXITED | WNOWAIT) == 0);
    const std::vector<pid_t> pids{holder.pid(), zombie};
    const auto host = scan::read_host_fd_tables(procfs, pids, 0); // the iterator whatever the host
    const auto walked = scan::read_fd_tables(procfs, pids, 1);
    REQUIRE(host.size() == 2);
    for (std::size_t i = 0; i < pids.size(); ++i) {
        CAPTURE(pids[i]);
        CHECK(host[i].fds.has_value() == walked[i].fds.has_value());
        if (host[i].fds && walked[i].fds) {
            CHECK(host[i].fds->socket_inodes == walked[i].fds->socket_inodes);
            CHECK(host[i].fds->open_fds == walked[i].fds->open_fds);
        }
        if (host[i].error && walked[i].error)
            CHECK(host[i].error->code() == walked[i].error->code());
    }
    REQUIRE(walked[1].fds);
    CHECK(walked[1].fds->open_fds == 0);
}
