#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_envelope: serialized Envelopes, one per file.

Encodes protobuf by hand (stdlib only) following proto/nodeagent.proto, so the seeds do not
depend on a protobuf package.  Most seeds are valid requests of each kind, a few break one
rule or carry a field number this agent does not know, so the fuzzer starts from both sides
of the validator.  Re-run after changing the proto:

    python3 tests/fuzz/gen_envelope_corpus.py tests/fuzz/corpus/fuzz_envelope
"""
import os
import sys

VARINT, LEN = 0, 2


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire):
    return varint(field << 3 | wire)


def num(field, n):
    return tag(field, VARINT) + varint(n)


def raw(field, data):
    return tag(field, LEN) + varint(len(data)) + data


def text(field, s):
    return raw(field, s.encode())


def msg(field, *parts):
    return raw(field, b"".join(parts))


UUID_A = "3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33"
UUID_B = "7b1d4e90-2c3a-4f5b-8e6d-1a2b3c4d5e6f"
UUID_C = "c0ffee00-1234-4abc-8def-0123456789ab"
UUID_D = "d00dfeed-5678-4cde-9f01-23456789abcd"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def flavor(field=4):
    return msg(field, text(1, "m1.small"), num(2, 2), num(3, 2048), num(4, 20))


def image(field=5, fmt=1):
    return msg(field, text(1, "debian-12"),
               text(2, "https://images.example.com/debian-12.qcow2"),
               text(3, SHA), num(4, fmt))


def nic(port, mac, ips, gateway="", mtu=0):
    parts = [text(1, port), text(2, UUID_D), num(3, 4242), text(4, mac)]
    parts += [text(5, ip) for ip in ips]
    if gateway:
        parts.append(text(6, gateway))
    if mtu:
        parts.append(num(7, mtu))
    return msg(6, *parts)


def spec(field=1, mac0="52:54:00:12:34:56"):
    return msg(field,
               text(1, UUID_A), text(2, "web-1"), text(3, "tenant-42"),
               flavor(), image(),
               nic(UUID_B, mac0, ["10.0.0.5/24", "10.0.0.6/24"], "10.0.0.1", 1450),
               nic(UUID_C, "52:54:00:ab:cd:ef", ["192.168.7.9/32"]),
               text(7, "web-1"),
               text(8, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5 alice@example"),
               raw(9, b"#cloud-config\npackages: [nginx]\n"),
               msg(10, text(1, "role"), text(2, "web")),
               msg(10, text(1, "owner"), text(2, "Zo\u00eb")))


def envelope(request_id, body, reply_to=""):
    parts = [text(1, request_id), num(2, 1700000000000)]
    if reply_to:
        parts.append(text(3, reply_to))
    return b"".join(parts) + body


def instance_only(field):
    return msg(field, text(1, UUID_A))


SEEDS = {
    # valid requests, one per kind
    "create": envelope("req-create", msg(10, spec())),
    "delete": envelope("req-delete", instance_only(11)),
    "start": envelope("req-start", instance_only(12)),
    "stop": envelope("req-stop", msg(13, text(1, UUID_A), num(2, 60), num(3, 1))),
    "reboot": envelope("req-reboot", msg(14, text(1, UUID_A), num(2, 2))),
    "pause": envelope("req-pause", instance_only(15)),
    "resume": envelope("req-resume", instance_only(16)),
    "suspend": envelope("req-suspend", instance_only(17)),
    "snapshot_create": envelope("req-snap", msg(18, text(1, UUID_A), text(2, "before-upgrade"))),
    "snapshot_revert": envelope("req-revert", msg(19, text(1, UUID_A), text(2, "before-upgrade"))),
    "snapshot_delete": envelope("req-snapdel", msg(20, text(1, UUID_A), text(2, "s1"))),
    "resize": envelope("req-resize", msg(21, text(1, UUID_A), flavor(2))),
    "rebuild": envelope("req-rebuild", msg(22, text(1, UUID_A), image(2, 2))),
    "console_log": envelope("req-console", msg(23, text(1, UUID_A), num(2, 4096))),
    "migrate": envelope("req-migrate", msg(24, text(1, UUID_A), text(2, "compute-07"),
                                           msg(3, num(1, 500), num(2, 1000), num(3, 1),
                                               num(4, 0), num(5, 600)))),
    "cancel_migration": envelope("req-cancel", instance_only(25)),
    "migration_prepare": envelope(
        "mig-prepare", msg(40, text(1, UUID_C), text(2, "compute-03"), spec(3),
                           text(4, "<cpu mode='custom'><model>Haswell</model></cpu>"),
                           msg(5, text(1, "disk"), num(2, 21474836480)),
                           msg(5, text(1, "disk.config"), num(2, 1048576))),
        reply_to="compute-03"),
    "migration_prepared": envelope(
        "mig-prepared", msg(41, text(1, UUID_C), text(2, "compute-07"),
                            text(4, "tcp://10.1.0.7:49152")), reply_to="compute-07"),
    "migration_prepared_error": envelope(
        "mig-prepared-err", msg(41, text(1, UUID_C), text(2, "compute-07"),
                                msg(3, num(1, 8), text(2, "not enough memory")))),
    "migration_finish": envelope("mig-finish", msg(42, text(1, UUID_C), text(2, "compute-03"),
                                                   num(3, 1))),
    "migration_abort": envelope("mig-abort", msg(43, text(1, UUID_C), text(2, "compute-07"),
                                                 msg(3, num(1, 13), text(2, "timed out")))),
    # invalid ones: one rule broken each
    "bad_multicast_mac": envelope("req-bad-mac", msg(10, spec(mac0="01:00:5e:00:00:01"))),
    "bad_unknown_format": envelope("req-bad-fmt", msg(22, text(1, UUID_A), image(2, 7))),
    "bad_no_body": envelope("req-empty", b""),
    "bad_future_kind": envelope("req-future", msg(99, text(1, UUID_A))),
    "bad_negative_time": text(1, "req-neg") + num(2, -5) + instance_only(12),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_envelope")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name + ".pb"), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {out}")


if __name__ == "__main__":
    main()
