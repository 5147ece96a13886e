"""The bus's signatures from Python (docs/protocol.md, "Signatures"), with Debian's
python3-cryptography: keys, node certificates, and signed messages as a control plane, a
node, or an attacker would make them.  The test harness uses it to give every agent its
keys; the trust tests use it to forge."""
import os
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONTEXTS = {
    "request": b"nodeagent.v1.request\0",
    "peer": b"nodeagent.v1.peer\0",
    "announcement": b"nodeagent.v1.announcement\0",
    "node-certificate": b"nodeagent.v1.node-certificate\0",
}
SIGNATURE_HEADER = "nodeagent-signature"
CERTIFICATE_HEADER = "nodeagent-certificate"


def keygen(path):
    """A new Ed25519 key: PEM PKCS#8 at path (0600), its public key at path's .pub."""
    key = Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(public_path(path), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def public_path(path):
    return (path[:-4] if path.endswith(".key") else path) + ".pub"


def load(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def raw_public(path):
    return load(path).public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)


def sign(key_path, purpose, data):
    """The nodeagent-signature header's value: hex Ed25519 over the context and data."""
    return load(key_path).sign(CONTEXTS[purpose] + data).hex()


# Protocol buffers by hand: the few messages the tests build.
def varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def lendelim(num, data):
    if isinstance(data, str):
        data = data.encode()
    return field(num, 2, varint(len(data)) + data)


def node_certificate(node_id, public_key, endpoints=(), not_before_ms=None, not_after_ms=None):
    now = int(time.time() * 1000)
    nb = now - 60_000 if not_before_ms is None else not_before_ms
    na = now + 365 * 86400_000 if not_after_ms is None else not_after_ms
    return (lendelim(1, node_id) + lendelim(2, public_key)
            + b"".join(lendelim(3, e) for e in endpoints)
            + field(4, 0, varint(nb)) + field(5, 0, varint(na)))


def issue(cp_key_path, node_id, node_key_path, endpoints=(), **validity):
    """A SignedNodeCertificate (bytes) for the node key, signed by the control plane."""
    cert = node_certificate(node_id, raw_public(node_key_path), endpoints, **validity)
    sig = bytes.fromhex(sign(cp_key_path, "node-certificate", cert))
    return lendelim(1, cert) + lendelim(2, sig)


def write_cert(path, signed):
    with open(path, "wb") as f:
        f.write(signed)
    os.chmod(path, 0o644)
    return path


def announcement(node_id, endpoint, time_ms=None, interval=1, version="9.9", vnis=(),
                 leaving=False):
    time_ms = int(time.time() * 1000) if time_ms is None else time_ms
    packed = b"".join(varint(v) for v in vnis)
    return (lendelim(1, node_id) + field(2, 0, varint(time_ms)) + lendelim(3, version)
            + lendelim(4, endpoint) + field(5, 0, varint(interval))
            + (field(6, 0, varint(1)) if leaving else b"")
            + (field(7, 2, varint(len(packed)) + packed) if vnis else b""))


def node_headers(node_key_path, cert_bytes, purpose, data):
    """kcat -H arguments for a message signed by a node."""
    return ["-H", f"{SIGNATURE_HEADER}={sign(node_key_path, purpose, data)}",
            "-H", f"{CERTIFICATE_HEADER}={cert_bytes.hex()}"]


class Authority:
    """A control plane's key in dir, and the node keys and certificates it issues."""

    def __init__(self, directory):
        self.dir = directory
        self.key = keygen(os.path.join(directory, "control-plane.key"))
        self.public = public_path(self.key)

    def node(self, node_id, endpoints=None, **validity):
        """(key path, certificate path) for a node: its key made once, its certificate issued
        again when endpoints or validity are given (or when it has none yet)."""
        key = os.path.join(self.dir, f"node-{node_id}.key")
        cert = os.path.join(self.dir, f"node-{node_id}.cert")
        if not os.path.exists(key):
            keygen(key)
        if endpoints is not None or validity or not os.path.exists(cert):
            write_cert(cert, issue(self.key, node_id, key, endpoints or (), **validity))
        return key, cert

    def agent_config(self, node_id, endpoints=()):
        key, cert = self.node(node_id, endpoints)
        return (f"control_plane_key = {self.public}\nnode_key = {key}\nnode_cert = {cert}\n")
