// A process whose TCP sockets a test changes on command, for watching it from outside (the tmux
// test of `conncheck watch`). Usage: watch_target CMD_FIFO STATUS_FILE
// It listens on 127.0.0.1, then reads one command per line from CMD_FIFO:
//   open N   N connections to its own listener, both ends held (ESTABLISHED += 2N)
//   leak N   the server end of N of them closes: the client ends sit in CLOSE_WAIT
//   tw N     N of them close client first: TIME_WAIT on sockets a watcher saw live
//   churn N  N connections open and close at once: TIME_WAIT no watcher saw live
//   quit
// After each command it rewrites STATUS_FILE with "done <number of commands> <listening port>".
#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace {

struct Pair {
    int client = -1;
    int server = -1;
};

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "watch_target: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    return sin;
}

Pair connect_pair(int listener, std::uint16_t port) {
    Pair p;
    p.client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p.client < 0) die("socket");
    const sockaddr_in sin = loopback(port);
    if (connect(p.client, reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0) die("connect");
    p.server = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (p.server < 0) die("accept");
    return p;
}

// Client closes first; once its FIN is read the server closes too, so the client's socket ends
// in TIME_WAIT (not both sides in a simultaneous close).
void close_client_first(Pair& p) {
    close(p.client);
    char byte;
    while (read(p.server, &byte, 1) > 0) {
    }
    close(p.server);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: watch_target CMD_FIFO STATUS_FILE\n");
        return 2;
    }
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) die("socket");
    sockaddr_in sin = loopback(0);
    if (bind(listener, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) die("bind");
    if (listen(listener, 4096) != 0) die("listen");
    socklen_t len = sizeof sin;
    getsockname(listener, reinterpret_cast<sockaddr*>(&sin), &len);
    const std::uint16_t port = ntohs(sin.sin_port);

    std::vector<Pair> open;
    std::vector<int> close_wait;
    unsigned done = 0;
    auto report = [&] {
        const std::string tmp = std::string(argv[2]) + ".tmp";
        std::ofstream(tmp) << "done " << done << ' ' << port << '\n';
        if (rename(tmp.c_str(), argv[2]) != 0) die("rename");
    };
    report();
    for (;;) {
        std::ifstream commands(argv[1]); // blocks until a writer opens the fifo
        std::string op;
        std::size_t n = 0;
        while (commands >> op) {
            if (op == "quit") return 0;
            if (!(commands >> n)) return 2;
            if (op == "open") {
                for (std::size_t i = 0; i < n; ++i)
                    open.push_back(connect_pair(listener, port));
            } else if (op == "leak") {
                for (std::size_t i = 0; i < n && !open.empty(); ++i) {
                    close(open.back().server);
                    close_wait.push_back(open.back().client);
                    open.pop_back();
                }
            } else if (op == "tw") {
                for (std::size_t i = 0; i < n && !open.empty(); ++i) {
                    close_client_first(open.back());
                    open.pop_back();
                }
            } else if (op == "churn") {
                for (std::size_t i = 0; i < n; ++i) {
                    Pair p = connect_pair(listener, port);
                    close_client_first(p);
                }
            } else {
                return 2;
            }
            ++done;
            report();
        }
    }
}
