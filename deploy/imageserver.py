#!/usr/bin/python3
"""A small image server for tests and `make run`: HTTP/1.1 on loopback only.

    imageserver.py --root DIR [--port 0] [--bind 127.0.0.1]

prints http://ADDR:PORT/ as its first line on stdout (ADDR: --bind, an address in
127.0.0.0/8), then serves the files under DIR
with Range support (206, or 416 past the end), counting the requests per path.  Hostile
behaviours for tests are path prefixes, which may be chained before the file name:

    /_/truncate/<file>          promise the whole Content-Length, send half, close
    /_/truncate-n/<n>/<file>    truncate the first n requests of this path, then behave
    /_/flaky/<n>/<file>         answer 500 to the first n requests of this path, then behave
    /_/hang/<file>              read the request, never answer
    /_/norange/<file>           ignore Range: always 200 with the whole file
    /_/slow/<bytes-per-s>/<file>  send at about that rate
    /_/chunked/<file>           no Content-Length: chunked transfer encoding
    /_/redirect/<url-path>      302 to /<url-path> on this server
    /_/redirect-to/<host:port>/<url-path>  302 to http://<host:port>/<url-path> (another
                                loopback server, for tests of the client's address check)
    /_/redirect-file/<abs-path> 302 to file:///<abs-path> (which clients must refuse)
    /_/stats                    {"requests": {path: n}, "range_requests": {path: n}}

PUT /uploads/<name> (Content-Length required, at most 1 GiB) stores the body as
DIR/uploads/<name> (written to a temp name, renamed when complete) and answers 201; /_/flaky/<n>/
before it answers 503 to the first n PUTs of that path, after reading their bodies.  Requests
of every method are counted per path.

e.g. /_/norange/_/truncate-n/1/img.raw.  Stops on SIGTERM.  Standard library only.
"""

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOP = threading.Event()
LOCK = threading.Lock()
REQUESTS = {}  # path -> count, under LOCK
RANGE_REQUESTS = {}  # path -> count, under LOCK
MAX_UPLOAD = 1 << 30


class Plan:
    def __init__(self):
        self.truncate = False
        self.truncate_n = None
        self.flaky = None
        self.hang = False
        self.norange = False
        self.slow = None
        self.chunked = False


def parse_plan(path):
    """Splits /_/a/_/b/n/file into its directives and the file path."""
    plan = Plan()
    parts = path.lstrip("/").split("/")
    while len(parts) >= 2 and parts[0] == "_":
        name = parts[1]
        if name in ("truncate", "hang", "norange", "chunked"):
            setattr(plan, name, True)
            parts = parts[2:]
        elif name in ("truncate-n", "flaky", "slow") and len(parts) >= 3:
            setattr(plan, name.replace("-", "_"), int(parts[2]))
            parts = parts[3:]
        else:
            break
    return plan, "/".join(parts)


def parse_range(header, size):
    """Returns (start, end) inclusive for 'bytes=a-b' or 'bytes=a-', or None; 'bad' if unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 else "bad"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "imageserver"

    def log_message(self, fmt, *args):  # quiet: tests read stdout
        if os.environ.get("IMAGESERVER_VERBOSE"):
            sys.stderr.write("imageserver: " + (fmt % args) + "\n")

    def do_HEAD(self):
        self.handle_get(head=True)

    def do_GET(self):
        self.handle_get(head=False)

    def do_PUT(self):
        path = urllib.parse.urlsplit(self.path).path
        with LOCK:
            REQUESTS[path] = n = REQUESTS.get(path, 0) + 1
        plan, rel = parse_plan(path)
        name = urllib.parse.unquote(rel)
        length = self.headers.get("Content-Length")
        if not length or not length.isdigit() or int(length) > MAX_UPLOAD:
            self.simple(411 if not length else 413, "a Content-Length up to 1 GiB\n")
            self.close_connection = True
            return
        if not name.startswith("uploads/") or "/" in name[8:] or name[8:] in ("", ".", ".."):
            self.simple(403, "PUT only to /uploads/<name>\n")
            self.close_connection = True
            return
        updir = os.path.join(self.server.root, "uploads")
        os.makedirs(updir, exist_ok=True)
        tmp = os.path.join(updir, ".%s.%d.part" % (name[8:], threading.get_ident()))
        left = int(length)
        with open(tmp, "wb") as f:
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                f.write(data)
                left -= len(data)
        if left:
            os.unlink(tmp)
            self.close_connection = True
            return
        if plan.flaky is not None and n <= plan.flaky:
            os.unlink(tmp)
            self.simple(503, "flaky: failure %d of %d\n" % (n, plan.flaky))
            return
        os.rename(tmp, os.path.join(updir, name[8:]))
        self.simple(201, "stored\n")

    def simple(self, status, body, ctype="text/plain", extra=None):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_get(self, head):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_/stats":
            with LOCK:
                body = json.dumps({"requests": REQUESTS, "range_requests": RANGE_REQUESTS})
            self.simple(200, body, "application/json")
            return
        with LOCK:
            REQUESTS[path] = n = REQUESTS.get(path, 0) + 1
            if self.headers.get("Range"):
                RANGE_REQUESTS[path] = RANGE_REQUESTS.get(path, 0) + 1
        if path.startswith("/_/redirect/"):
            self.simple(302, "", extra={"Location": "/" + path[len("/_/redirect/"):]})
            return
        if path.startswith("/_/redirect-to/"):
            target = "http://" + path[len("/_/redirect-to/"):]
            self.simple(302, "", extra={"Location": target})
            return
        if path.startswith("/_/redirect-file/"):
            target = "file:///" + path[len("/_/redirect-file/"):]
            self.simple(302, "", extra={"Location": target})
            return
        plan, rel = parse_plan(path)
        if plan.hang:
            STOP.wait()
            self.close_connection = True
            return
        if plan.flaky is not None and n <= plan.flaky:
            self.simple(500, "flaky: failure %d of %d\n" % (n, plan.flaky))
            return
        root = self.server.root
        file = os.path.realpath(os.path.join(root, urllib.parse.unquote(rel)))
        if not file.startswith(root + os.sep) or not os.path.isfile(file):
            self.simple(404, "not found\n")
            return
        size = os.path.getsize(file)
        rng = None if plan.norange else parse_range(self.headers.get("Range"), size)
        if rng == "bad":
            self.simple(416, "", extra={"Content-Range": "bytes */%d" % size})
            return
        start, end = rng if rng else (0, size - 1)
        length = end - start + 1
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "none" if plan.norange else "bytes")
        if rng:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        if plan.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        truncate = plan.truncate or (plan.truncate_n is not None and n <= plan.truncate_n)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        send = length // 2 if truncate else length
        with open(file, "rb") as f:
            f.seek(start)
            self.send_body(f, send, plan)
        if truncate:
            self.wfile.flush()
            self.close_connection = True
        elif plan.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def send_body(self, f, count, plan):
        block = 64 << 10
        if plan.slow:
            block = max(1, min(block, plan.slow // 10))
        while count > 0 and not STOP.is_set():
            data = f.read(min(block, count))
            if not data:
                break
            if plan.chunked:
                self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                self.wfile.write(data)
            count -= len(data)
            if plan.slow:
                time.sleep(len(data) / plan.slow)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients that hang up mid-body (size limits, tests) are expected, not news.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description="test image server (loopback only)")
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bind", default="127.0.0.1", help="an address in 127.0.0.0/8")
    args = ap.parse_args()
    if ipaddress.IPv4Address(args.bind) not in ipaddress.IPv4Network("127.0.0.0/8"):
        ap.error("--bind must be in 127.0.0.0/8")
    server = Server((args.bind, args.port), Handler)
    server.root = os.path.realpath(args.root)

    def stop(signum, frame):
        STOP.set()
        # shutdown() waits for serve_forever(): call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("http://%s:%d/" % (args.bind, server.server_address[1]), flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


if __name__ == "__main__":
    main()
