// Call sites as data: the first frame in the user's own code on stacks recorded from real
// processes (C with and without frame pointers, Go's net/http, CPython), how a frame reads, and
// how leaks group by it.
#include "conncheck/trace/frame.hpp"
#include "conncheck/trace/ledger.hpp"

#include <doctest/doctest.h>
#include <string>

using namespace conncheck;
using namespace conncheck::trace;

namespace {

const char* const libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";

Frame at(FrameOrigin origin, std::uint64_t pc, std::string function, std::string module,
         std::string file = {}, int line = 0) {
    Frame f;
    f.origin = origin;
    f.address = pc;
    f.function = std::move(function);
    f.module = std::move(module);
    f.file = std::move(file);
    f.line = line;
    return f;
}

Frame native(std::uint64_t pc, std::string function, std::string module, std::string file = {},
             int line = 0) {
    return at(FrameOrigin::native, pc, std::move(function), std::move(module), std::move(file),
              line);
}

Frame go(std::uint64_t pc, std::string function, int line = 0) {
    return at(FrameOrigin::go, pc, std::move(function), "/tmp/gotest/leaker", "/x.go", line);
}

Frame python(std::string file, int line, std::string function) {
    Frame f;
    f.origin = FrameOrigin::python;
    f.function = std::move(function);
    f.file = std::move(file);
    f.line = line;
    return f;
}

// `gcc -O2 -g -fomit-frame-pointer` (tests/live/trace_callsites_test.py), unwound from the
// tables: libc's wrapper, then the program's own functions up to libc's start.
CallSite c_without_frame_pointers() {
    return CallSite{
        {native(0x7f5e2a91d9e0, "connect", libc),
         native(0x5589c2a0120c, "open_and_forget", "/tmp/t/leaker", "/tmp/t/leaker.c", 17),
         native(0x5589c2a012a3, "dial_exchange", "/tmp/t/leaker", "/tmp/t/leaker.c", 31),
         native(0x5589c2a010f2, "main", "/tmp/t/leaker", "/tmp/t/leaker.c", 44),
         native(0x7f5e2a84624a, "__libc_start_call_main", libc),
         native(0x7f5e2a846304, "__libc_start_main", libc),
         native(0x5589c2a01160, "_start", "/tmp/t/leaker")},
        true,
        "",
        ""};
}

// Go 1.19's net/http client (tests/live/trace_callsites_test.py): the transport's goroutine, up
// to runtime.goexit, as trace recorded it.
CallSite go_net_http() {
    CallSite site;
    std::uint64_t pc = 0x4a0000;
    for (const char* name : {"runtime/internal/syscall.Syscall6",
                             "syscall.RawSyscall6",
                             "syscall.Syscall",
                             "syscall.connect",
                             "syscall.Connect",
                             "net.(*netFD).connect",
                             "net.(*netFD).dial",
                             "net.socket",
                             "net.internetSocket",
                             "net.(*sysDialer).doDialTCP",
                             "net.(*sysDialer).dialTCP",
                             "net.(*sysDialer).dialSingle",
                             "net.(*sysDialer).dialSerial",
                             "net.(*sysDialer).dialParallel",
                             "net.(*Dialer).DialContext",
                             "net.(*Dialer).DialContext-fm",
                             "net/http.(*Transport).dial",
                             "net/http.(*Transport).dialConn",
                             "net/http.(*Transport).dialConnFor",
                             "net/http.(*Transport).queueForDial.func1",
                             "runtime.goexit.abi0"})
        site.frames.push_back(go(pc += 0x40, name));
    site.complete = true;
    return site;
}

} // namespace

TEST_CASE("first user frame: C without frame pointers is the function that called connect") {
    const CallSite site = c_without_frame_pointers();
    REQUIRE(first_user_frame(site));
    CHECK(*first_user_frame(site) == 1);
    CHECK(frame_text(site.frames[1]) == "open_and_forget (leaker.c:17)");
}

TEST_CASE("first user frame: Go's standard library and runtime are not the user's code") {
    CHECK_FALSE(first_user_frame(go_net_http()));
    CallSite direct = go_net_http();
    direct.frames.insert(direct.frames.end() - 1, go(0x401000, "main.leak", 21));
    REQUIRE(first_user_frame(direct));
    CHECK(direct.frames[*first_user_frame(direct)].function == "main.leak");
    CallSite module = go_net_http();
    module.frames.insert(module.frames.end() - 1,
                         go(0x402000, "github.com/acme/feed.(*Client).Dial", 9));
    REQUIRE(first_user_frame(module));
    CHECK(module.frames[*first_user_frame(module)].function ==
          "github.com/acme/feed.(*Client).Dial");
    CallSite internal;
    internal.frames = {go(0x1, "internal/poll.(*FD).Init"), go(0x2, "crypto/tls.Dial")};
    CHECK_FALSE(first_user_frame(internal));
}

TEST_CASE("first user frame: CPython's stdlib, site-packages and the interpreter are skipped") {
    CallSite site;
    site.frames = {
        native(0x7f01, "connect", libc),
        native(0x5c01, "sock_connect", "/usr/bin/python3.11"),
        python("/usr/lib/python3.11/socket.py", 833, "create_connection"),
        python("/usr/lib/python3/dist-packages/websockets/client.py", 120,
               "Connect.__await_impl__"),
        python("/home/u/venv/lib/python3.11/site-packages/aiohttp/connector.py", 9,
               "TCPConnector._create"),
        python("<frozen runpy>", 88, "_run_code"),
        python("/srv/collector/binance_websocket.py", 212, "BinanceWebsocket._handle_reconnection"),
        python("/srv/collector/main.py", 40, "main"),
        native(0x7f02, "__libc_start_call_main", libc)};
    REQUIRE(first_user_frame(site));
    CHECK(*first_user_frame(site) == 6);
    CHECK(frame_text(site.frames[6]) ==
          "/srv/collector/binance_websocket.py:212 in BinanceWebsocket._handle_reconnection");
}

TEST_CASE("first user frame: system libraries and interpreters, wherever they are, are not") {
    CallSite site;
    site.frames = {native(0x1, "connect", "/lib/x86_64-linux-gnu/libc.so.6"),
                   native(0x2, "PQconnectPoll", "/usr/lib/x86_64-linux-gnu/libpq.so.5"),
                   native(0x3, "uv__tcp_connect", "/usr/bin/node"),
                   native(0x4, "_PyEval_EvalFrameDefault", "/opt/py/lib/libpython3.11.so.1.0"),
                   native(0x5, "", ""),
                   native(0x6, "fetch", "/usr/local/lib/libacme.so.1"),
                   native(0x7, "main", "/usr/sbin/acme-daemon")};
    REQUIRE(first_user_frame(site));
    CHECK(site.frames[*first_user_frame(site)].function == "fetch");
    site.frames.erase(site.frames.begin() + 5);
    CHECK(site.frames[*first_user_frame(site)].function == "main");
}

TEST_CASE("first user frame: code from a system header is the library's, not the user's") {
    CallSite site;
    site.frames = {
        native(0x1, "connect", libc),
        native(0x2, "boost::asio::detail::reactive_socket_service_base::start_connect_op",
               "/usr/bin/collector", "/usr/include/boost/asio/detail/impl/socket_ops.ipp", 469),
        native(0x3, "std::function<void ()>::operator()", "/usr/bin/collector",
               "/usr/include/c++/12/bits/std_function.h", 591),
        native(0x4, "Feed::reconnect", "/usr/bin/collector", "/src/feed/feed.cpp", 88),
        native(0x5, "main", "/usr/bin/collector", "/src/feed/main.cpp", 12)};
    REQUIRE(first_user_frame(site));
    CHECK(site.frames[*first_user_frame(site)].function == "Feed::reconnect");
}

TEST_CASE("a C++ frame reads without its template arguments; operators keep their brackets") {
    const std::string asio =
        "void boost::asio::detail::range_connect_op<boost::asio::ip::tcp, "
        "boost::asio::any_io_executor, std::vector<int, std::allocator<int> > >::process<"
        "boost::asio::ip::basic_resolver_iterator<boost::asio::ip::tcp> >";
    Frame f = native(0x10, asio, "/usr/bin/collector", "/usr/include/boost/asio/connect.hpp", 338);
    CHECK(frame_text(f) ==
          "void boost::asio::detail::range_connect_op<...>::process<...> (connect.hpp:338)");
    CHECK(f.function == asio);
    f.function = "std::basic_ostream<char>& std::operator<< <std::char_traits<char> >";
    CHECK(frame_text(f) == "std::basic_ostream<...>& std::operator<< <...> (connect.hpp:338)");
    f.function = "Feed::operator->";
    CHECK(frame_text(f) == "Feed::operator-> (connect.hpp:338)");
}

TEST_CASE("a frame reads as function (file:line), or the module, or the address") {
    CHECK(frame_text(native(0x10, "connect", libc)) == "connect (libc.so.6)");
    CHECK(frame_text(native(0x10, "", "/opt/a/client")) == "0x10 (client)");
    CHECK(frame_text(native(0x10, "", "")) == "0x10 (?)");
    CHECK(frame_text(python("app.py", 0, "")) == "app.py in ?");
}

TEST_CASE("a stack is complete only when it reaches the thread's start") {
    CHECK(starts_thread("_start"));
    CHECK(starts_thread("clone3"));
    CHECK(starts_thread("start_thread"));
    CHECK(starts_thread("runtime.goexit"));
    CHECK(starts_thread("runtime.goexit.abi0"));
    CHECK_FALSE(starts_thread("main"));
    CHECK_FALSE(starts_thread("net/http.(*Transport).dialConnFor"));
}

TEST_CASE("leaks are grouped by the first frame in the user's code, not the frames below it") {
    Ledger l(0, LedgerConfig{10, 0}); // every CLOSE_WAIT a leak, however young
    CallSite a = c_without_frame_pointers();
    CallSite b = a;
    b.frames[0].address += 4; // another libc, or another path into connect
    b.frames.insert(b.frames.begin() + 1, native(0x7f5e2a91d000, "__connect_retry", libc));
    for (std::uint64_t id = 1; id <= 2; ++id) {
        Event open;
        open.kind = EventKind::opened;
        open.connection = id;
        open.pid = 7;
        open.thread = "leaker";
        open.new_state = TcpState::syn_sent;
        l.add(open, id == 1 ? a : b);
        Event cw = open;
        cw.kind = EventKind::state;
        cw.old_state = TcpState::established;
        cw.new_state = TcpState::close_wait;
        cw.time_ns = 5;
        l.add(cw);
    }
    const LedgerReport r = l.report(10);
    REQUIRE(r.groups.size() == 1);
    CHECK(r.groups[0].leaks.size() == 2);
    REQUIRE(r.groups[0].user_frame);
    CHECK(r.groups[0].call_site.frames[*r.groups[0].user_frame].function == "open_and_forget");
}
