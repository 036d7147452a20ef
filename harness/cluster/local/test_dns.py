"""The host-side DNS check: a real UDP exchange with a small responder, compression included."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from harness.cluster.local import dns


def _responder(answers: list[str], rcode: int = 0) -> tuple[socket.socket, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        query, peer = sock.recvfrom(512)
        ident = query[:2]
        question = query[12:]
        header = ident + struct.pack(">HHHHH", 0x8180 | rcode, 1, len(answers), 0, 0)
        body = b"".join(
            b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(ip) for ip in answers
        )
        sock.sendto(header + question + body, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock, thread


def test_a_records_come_back() -> None:
    sock, thread = _responder(["10.96.0.1", "10.96.0.2"])
    port = sock.getsockname()[1]
    assert dns.query_a("127.0.0.1", "kubernetes.default.svc.cluster.local", port=port) == [
        "10.96.0.1",
        "10.96.0.2",
    ]
    thread.join(2)
    sock.close()


def test_nxdomain_is_empty_and_servfail_raises() -> None:
    sock, thread = _responder([], rcode=3)
    assert dns.query_a("127.0.0.1", "nothere.cluster.local", port=sock.getsockname()[1]) == []
    thread.join(2)
    sock.close()
    sock, thread = _responder([], rcode=2)
    with pytest.raises(ValueError, match="rcode 2"):
        dns.query_a("127.0.0.1", "x.cluster.local", port=sock.getsockname()[1])
    thread.join(2)
    sock.close()


def test_no_server_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            dns.query_a("127.0.0.1", "a.b", port=silent.getsockname()[1], timeout=0.2)
