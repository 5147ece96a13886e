"""OpenStack Placement for system tests, and servers that only pretend to be one.

Placement: the Debian placement-api package's own server (`placement-api`, a wsgiref
server) with a private config directory, noauth2 and a SQLite database, bound to
127.0.0.1 on a port the kernel picks.  Started and stopped by pid; every file lives in
the given directory.

HostileServer: answers every request badly (an HTML error page, cut-off JSON, a 500,
nothing at all...), on loopback, to check that the client fails cleanly and on time.

ConflictProxy: passes requests to a Placement, but just before chosen PUTs it changes
the provider (or consumer) itself, as a concurrent writer would, so that the client's PUT
meets a generation conflict.
"""
import http.client
import http.server
import json
import os
import re
import select
import subprocess
import threading
import time
import uuid

MICROVERSION = "1.39"


class Placement:
    def __init__(self, workdir):
        self.dir = os.path.join(str(workdir), "placement")
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "placement.conf")
        with open(self.conf, "w") as f:
            f.write("[DEFAULT]\n"
                    "debug = false\n"
                    f"log_file = {self.dir}/placement.log\n"
                    "[api]\n"
                    "auth_strategy = noauth2\n"
                    "[placement_database]\n"
                    f"connection = sqlite:///{self.dir}/placement.db\n")
        self.env = dict(os.environ, OS_PLACEMENT_CONFIG_DIR=self.dir)
        self.proc = None
        self.url = None

    def start(self, timeout=60, port=0, fresh=False):
        """Starts placement-api on port (0: one the kernel picks); fresh: with an empty
        database, as a Placement that lost its state."""
        if fresh and os.path.exists(os.path.join(self.dir, "placement.db")):
            os.unlink(os.path.join(self.dir, "placement.db"))
        subprocess.run(["placement-manage", "--config-file", self.conf, "db", "sync"],
                       check=True, env=self.env, cwd=self.dir, capture_output=True, timeout=120)
        self.log = open(os.path.join(self.dir, "placement-api.log"), "w")
        # --host: the script's default ('') would listen on every interface.
        self.proc = subprocess.Popen(["placement-api", "--host", "127.0.0.1", "--port", str(port)],
                                     stdout=subprocess.PIPE, stderr=self.log, env=self.env,
                                     cwd=self.dir)
        deadline = time.monotonic() + timeout
        out = b""
        m = None
        # It prints the port it got; raw reads, as a buffered readline would hide lines
        # from select().
        while not m:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"placement-api did not start: {out!r} "
                                     f"{self.logs()[-3000:]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                out += os.read(self.proc.stdout.fileno(), 4096)
                m = re.search(rb"Available at http://[^:/]+:(\d+)/", out)
        port = int(m.group(1))
        self.url = f"http://127.0.0.1:{port}"
        while True:
            try:
                status, _ = self.request("GET", "/")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"placement-api does not answer: {self.logs()[-3000:]}")
            time.sleep(0.1)
        return self

    def request(self, method, path, body=None, version=MICROVERSION, timeout=30):
        """(status, decoded JSON or None) of one request to Placement itself."""
        m = re.match(r"http://([^:/]+):(\d+)", self.url)
        conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=timeout)
        try:
            headers = {"X-Auth-Token": "admin", "OpenStack-API-Version": f"placement {version}",
                       "Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()

    def get(self, path):
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def logs(self):
        out = ""
        for name in ("placement-api.log", "placement.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out += f.read()
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
            self.log.close()
            self.proc = None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HostileServer:
    """Every request gets the same bad answer, chosen by mode:

    html       502 with an HTML page (a proxy in front of a dead Placement)
    html404    404 with an HTML page
    truncated  200, Content-Length larger than the body, then the connection is closed
    badjson    200 with a complete response whose JSON is cut off
    500        500 with Placement's JSON error body
    hang       reads the request and never answers
    close      closes the connection without a word
    big        200 with an endless body
    """

    def __init__(self, mode, port=0):
        self.mode = mode
        self.stopping = threading.Event()
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                mode = outer.mode
                if mode == "hang":
                    outer.stopping.wait(60)
                    self.close_connection = True
                    return
                if mode == "close":
                    self.close_connection = True
                    return
                if mode in ("html", "html404"):
                    body = (b"<html><head><title>502 Bad Gateway</title></head><body>"
                            b"<h1>Bad Gateway</h1>\n<p>The proxy server received an invalid "
                            b"response.</p></body></html>")
                    self._send(502 if mode == "html" else 404, "text/html", body)
                elif mode == "truncated":
                    body = b'{"resource_provider_generation": 1, "inven'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "400")
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                elif mode == "badjson":
                    self._send(200, "application/json",
                               b'{"uuid": "x", "generation": 1, "name": "no')
                elif mode == "500":
                    self._send(500, "application/json", json.dumps({"errors": [{
                        "status": 500, "title": "Internal Server Error",
                        "detail": "The server has either erred or is incapable of performing "
                                  "the requested operation.\n\n  boom  ",
                        "code": "placement.undefined_code"}]}).encode())
                elif mode == "big":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    try:
                        self.wfile.write(b'{"x": "')
                        chunk = b"a" * 65536
                        while not outer.stopping.is_set():
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                    self.close_connection = True

            def _send(self, status, ctype, body):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

        self.server = _Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class ConflictProxy:
    """Forwards to placement; before a PUT to a path matching one of `intrude`'s patterns,
    calls intrude[pattern](placement, path), once it returns True, so that the PUT that
    follows carries a stale generation.  `seen` lists (method, path, status)."""

    def __init__(self, placement, intrude):
        self.placement = placement
        self.intrude = dict(intrude)
        self.seen = []
        self.intruded = []
        outer = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with lock:
                    if self.command == "PUT":
                        for pat in list(outer.intrude):
                            if (re.fullmatch(pat, self.path)
                                    and outer.intrude[pat](outer.placement, self.path)):
                                del outer.intrude[pat]
                                outer.intruded.append(self.path)
                    m = re.match(r"http://([^:/]+):(\d+)", outer.placement.url)
                    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=30)
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("host", "connection", "content-length")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    conn.close()
                    outer.seen.append((self.command, self.path, r.status))
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding",
                                         "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _forward

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def bump_provider(placement, path):
    """A concurrent writer: adds an aggregate to the provider of path (its generation +1)."""
    rp = re.match(r"/resource_providers/([0-9a-f-]{36})", path).group(1)
    cur = placement.get(f"/resource_providers/{rp}/aggregates")
    status, body = placement.request("PUT", f"/resource_providers/{rp}/aggregates", {
        "aggregates": cur["aggregates"] + [str(uuid.uuid4())],
        "resource_provider_generation": cur["resource_provider_generation"]})
    assert status == 200, (status, body)
    return True


def bump_consumer(placement, path):
    """A concurrent writer: rewrites the consumer's allocations (its generation +1)."""
    consumer = path.rsplit("/", 1)[1]
    cur = placement.get(f"/allocations/{consumer}")
    if not cur["allocations"]:
        return False  # a new consumer: wait for the PUT that changes it
    allocs = {rp: {"resources": dict(a["resources"])} for rp, a in cur["allocations"].items()}
    for a in allocs.values():
        a["resources"]["VCPU"] = a["resources"].get("VCPU", 0) + 1
    status, body = placement.request("PUT", f"/allocations/{consumer}", {
        "allocations": allocs, "consumer_generation": cur.get("consumer_generation"),
        "project_id": cur["project_id"], "user_id": cur["user_id"],
        "consumer_type": "INSTANCE"})
    assert status == 204, (status, body)
    return True
