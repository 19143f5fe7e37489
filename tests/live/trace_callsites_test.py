#!/usr/bin/env python3
"""`conncheck trace` call sites per language, end to end: a C program built here with
`gcc -O2 -g -fomit-frame-pointer` (its stack unwound from the tables), one with frame pointers
that leaks from the main thread's stack and then from a coroutine's stack mapped apart, a Go net/http client that
never closes resp.Body (Debian's golang-go, standard library only, built offline here), and a
node.js client (when node is installed). Each leaks one connection into CLOSE_WAIT; the ledger
must name the right code, or say in one line why it cannot.

usage: trace_callsites_test.py CONNCHECK
Exits 77 where eBPF tracing cannot work, or go is missing."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from livetest import FAILURES, STARTED, check, require_probe, start, wait_line

CONNCHECK = sys.argv[1]


class ClosingPeer:
    """A loopback listener that answers one HTTP request (or none) and closes: the client's
    socket goes to CLOSE_WAIT."""

    def __init__(self, http):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.http = http
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.http:
                c.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            c.close()

    def close(self):
        self.sock.close()


def trace_run(argv, ready_prefix, done_prefix, http, cwd=None, env=None):
    """Starts the program (it waits for a line on stdin), traces it, lets it leak, and returns
    the ledger once the program said it saw the peer's FIN."""
    peer = ClosingPeer(http)
    prog = start(argv + [str(peer.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 text=True, cwd=cwd, env=env)
    try:
        wait_line(prog.stdout, ready_prefix)
        # The leaked CLOSE_WAIT is seconds old at the end: count it as leaked.
        t = start([CONNCHECK, "trace", "--pid", str(prog.pid), "--json",
                   "--close-wait-min-age", "0"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = t.stderr.readline()
        if "tracing" not in line:
            raise RuntimeError(f"trace did not start: {line}{t.stderr.read()}")
        prog.stdin.write("go\n")
        prog.stdin.flush()
        wait_line(prog.stdout, done_prefix, timeout=30)
        t.send_signal(signal.SIGINT)
        out, err = t.communicate(timeout=60)
        check(t.returncode == 0, f"trace exit status {t.returncode}: {err}")
        lines = [json.loads(l) for l in out.splitlines() if l.strip()]
        check(lines and lines[-1]["type"] == "ledger", "the ledger is the last line")
        return lines[-1] if lines else {"leaks": []}
    finally:
        prog.kill()
        prog.wait()
        peer.close()


# What both C programs share: the connection to the loopback peer, inlined into the function that
# leaks it, so that function is the first user frame, and the fds held without a tail call.
C_DIAL = r'''
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int held[4];
static int nheld;

static inline __attribute__((always_inline)) int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    return fd;
}
'''

C_PROGRAM = C_DIAL + r'''
__attribute__((noinline)) int open_and_forget(int port) {
    return dial(port);
}

__attribute__((noinline)) int dial_exchange(int port) {
    int fd = open_and_forget(port);
    held[nheld++ & 3] = fd; /* after the call: no tail call, dial_exchange stays on the stack */
    return fd;
}

int main(int argc, char **argv) {
    char line[16];
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    int fd = dial_exchange(atoi(argv[1]));
    char c;
    if (fd < 0 || read(fd, &c, 1) != 0) /* the peer's FIN: CLOSE_WAIT from here on */
        return 1;
    printf("done\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin))
        ;
    return 0;
}
'''


def compile_c(tmp, name, source, frame_pointers):
    """Builds `source` with gcc -O2 -g, with or without frame pointers: the executable's path."""
    src = os.path.join(tmp, name + ".c")
    exe = os.path.join(tmp, name)
    with open(src, "w") as f:
        f.write(source)
    flag = "-fno-omit-frame-pointer" if frame_pointers else "-fomit-frame-pointer"
    subprocess.run(["gcc", "-O2", "-g", flag, "-o", exe, src], check=True)
    return exe


def user_frame(group):
    frames = group["call_site"]["frames"]
    return frames[group["user_frame"]] if group["user_frame"] is not None else {}


def c_without_frame_pointers(tmp):
    exe = compile_c(tmp, "leaker", C_PROGRAM, frame_pointers=False)
    ledger = trace_run([exe], "ready", "done", http=False)
    groups = ledger["leaks"]
    check(len(groups) == 1, f"C: one leak group, saw {len(groups)}")
    if not groups:
        return
    g = groups[0]
    site = g["call_site"]
    names = [f["function"] for f in site["frames"]]
    print(f"C call site: {names} complete={site['complete']} stops={site['stops']}")
    check(user_frame(g).get("function") == "open_and_forget",
          f"C: the first user frame is open_and_forget: {names}")
    i = g["user_frame"] if g["user_frame"] is not None else 0
    check(names[i + 1:i + 2] == ["dial_exchange"], f"C: its caller dial_exchange: {names}")
    check("main" in names, f"C: main is on the stack: {names}")
    check(site["complete"] and site["stops"] is None,
          f"C: the stack reaches the thread's start: {site['stops']}")
    check(any(f["trust"] == "unwound" for f in site["frames"]),
          "C: frames beyond the frame pointers come from the unwind tables")
    check((user_frame(g).get("file") or "").endswith("leaker.c") and user_frame(g).get("line"),
          "C: file and line of open_and_forget")


# Frame pointers this time, and two leaks: one on the main thread's stack, then one from a
# coroutine running on a stack mapped apart (swapcontext). trace keeps each thread's stack mapping
# from its first connection; the second must be walked in the coroutine's mapping.
COROUTINE_PROGRAM = C_DIAL + r'''
#include <sys/mman.h>
#include <ucontext.h>

static int port;
static ucontext_t main_context, coroutine_context;

__attribute__((noinline)) int leak_on_thread_stack(void) {
    int fd = dial(port);
    held[nheld++ & 3] = fd;
    return fd;
}

__attribute__((noinline)) int leak_in_coroutine(void) {
    int fd = dial(port);
    held[nheld++ & 3] = fd;
    return fd;
}

__attribute__((noinline)) void coroutine_body(void) {
    int fd = leak_in_coroutine();
    held[2] = fd; /* after the call: no tail call, coroutine_body stays on the stack */
}

int main(int argc, char **argv) {
    char line[16];
    port = atoi(argv[1]);
    size_t size = 256 * 1024;
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED)
        return 1;
    getcontext(&coroutine_context);
    coroutine_context.uc_stack.ss_sp = stack;
    coroutine_context.uc_stack.ss_size = size;
    coroutine_context.uc_link = &main_context;
    makecontext(&coroutine_context, coroutine_body, 0);
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    if (leak_on_thread_stack() < 0 || swapcontext(&main_context, &coroutine_context) != 0)
        return 1;
    char c;
    for (int i = 0; i < 2; i++)
        if (held[i] < 0 || read(held[i], &c, 1) != 0) /* the peer's FIN */
            return 1;
    printf("done\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin))
        ;
    return 0;
}
'''


def c_coroutine_stack(tmp):
    exe = compile_c(tmp, "coroutine", COROUTINE_PROGRAM, frame_pointers=True)
    ledger = trace_run([exe], "ready", "done", http=False)
    sites = {}
    for g in ledger["leaks"]:
        sites[user_frame(g).get("function")] = [f["function"] for f in g["call_site"]["frames"]]
    print(f"coroutine call sites: {sites}")
    check(set(sites) == {"leak_on_thread_stack", "leak_in_coroutine"},
          f"coroutine: one leak group per leaking function: {list(sites)}")
    check("main" in sites.get("leak_on_thread_stack", []),
          f"coroutine: the thread's stack reaches main: {sites.get('leak_on_thread_stack')}")
    check("coroutine_body" in sites.get("leak_in_coroutine", []),
          f"coroutine: the coroutine's stack is walked in its own mapping: "
          f"{sites.get('leak_in_coroutine')}")


GO_PROGRAM = r'''
package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
)

func leak(url string) *http.Response {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	return resp // resp.Body is never closed
}

func main() {
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	in.ReadString('\n')
	resp := leak("http://127.0.0.1:" + os.Args[1] + "/")
	fmt.Println("done", resp.StatusCode)
	in.ReadString('\n')
}
'''


def go_net_http(tmp):
    src = os.path.join(tmp, "gosrc")
    os.makedirs(src)
    with open(os.path.join(src, "main.go"), "w") as f:
        f.write(GO_PROGRAM)
    with open(os.path.join(src, "go.mod"), "w") as f:
        f.write("module leaker\n\ngo 1.19\n")
    env = dict(os.environ, GOCACHE=os.path.join(tmp, "gocache"), GOPATH=os.path.join(tmp, "gopath"),
               GOFLAGS="-mod=mod", GOTOOLCHAIN="local", GOPROXY="off", CGO_ENABLED="0")
    exe = os.path.join(tmp, "goleaker")
    subprocess.run(["go", "build", "-o", exe, "."], cwd=src, env=env, check=True)
    ledger = trace_run([exe], "ready", "done", http=True)
    groups = ledger["leaks"]
    check(len(groups) == 1, f"Go: one leak group, saw {len(groups)}")
    if not groups:
        return
    site = groups[0]["call_site"]
    names = [f["function"] or "" for f in site["frames"]]
    print(f"Go call site: {names} complete={site['complete']} stops={site['stops']} "
          f"note={site['note']}")
    check(any(n.startswith("net/http.") for n in names), f"Go: the stack reaches net/http: {names}")
    check("frame pointer" not in json.dumps(groups[0]), "Go: nothing about a missing frame pointer")
    check(site["complete"], f"Go: the stack reaches runtime.goexit: {site['stops']}")
    check(all(f["origin"] == "go" for f in site["frames"]), "Go: every frame is Go's")
    check("dialConnFor" not in " ".join(names) or "own" in (site["note"] or ""),
          "Go: the transport's goroutine is said in one line")


NODE_PROGRAM = r'''
const net = require('net');
const readline = require('readline');
const rl = readline.createInterface({input: process.stdin});
console.log('ready');
let started = false;
rl.on('line', () => {
    if (started) return;
    started = true;
    const s = net.connect(Number(process.argv[2]), '127.0.0.1');
    s.on('end', () => console.log('done'));
    s.allowHalfOpen = true;
    s.resume();
});
'''


def node_client(tmp):
    src = os.path.join(tmp, "leaker.js")
    with open(src, "w") as f:
        f.write(NODE_PROGRAM)
    ledger = trace_run([shutil.which("node"), src], "ready", "done", http=False)
    groups = ledger["leaks"]
    check(len(groups) == 1, f"node: one leak group, saw {len(groups)}")
    if not groups:
        return
    site = groups[0]["call_site"]
    print(f"node call site: {site}")
    check(site["frames"] == [], "node: no V8 internals as the call site")
    check("node" in (site["stops"] or "") and "out of scope" in site["stops"],
          "node: one line saying names are out of scope")


def main():
    require_probe(CONNCHECK)
    if not shutil.which("go"):
        print("skipped: go is missing (Debian package golang-go)", file=sys.stderr)
        sys.exit(77)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            c_without_frame_pointers(tmp)
            c_coroutine_stack(tmp)
            go_net_http(tmp)
            if shutil.which("node"):
                node_client(tmp)
            else:
                print("node is not installed: its case not run", file=sys.stderr)
        finally:
            for p in STARTED:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    if FAILURES:
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
