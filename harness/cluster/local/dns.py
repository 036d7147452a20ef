"""A DNS A-record query over UDP (RFC 1035), enough to check the cluster DNS from the host."""

from __future__ import annotations

import os
import socket
import struct


def query_a(server: str, name: str, *, port: int = 53, timeout: float = 2.0) -> list[str]:
    """The IPv4 addresses ``server`` answers for ``name`` (empty on NXDOMAIN or no answer)."""
    ident = int.from_bytes(os.urandom(2), "big")
    header = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # recursion desired, 1 question
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
    packet = header + qname + b"\0" + struct.pack(">HH", 1, 1)  # type A, class IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        reply, _ = sock.recvfrom(4096)
    return parse_a(reply, ident)


def _skip_name(msg: bytes, at: int) -> int:
    while True:
        length = msg[at]
        if length == 0:
            return at + 1
        if length & 0xC0 == 0xC0:  # compression pointer
            return at + 2
        at += 1 + length


def parse_a(reply: bytes, ident: int) -> list[str]:
    got, flags, qdcount, ancount = struct.unpack(">HHHH", reply[:8])
    if got != ident:
        raise ValueError("DNS reply id does not match the query")
    if flags & 0x000F not in (0, 3):  # NOERROR or NXDOMAIN
        raise ValueError(f"DNS error rcode {flags & 0x000F}")
    at = 12
    for _ in range(qdcount):
        at = _skip_name(reply, at) + 4
    found = []
    for _ in range(ancount):
        at = _skip_name(reply, at)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", reply[at : at + 10])
        at += 10
        if rtype == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[at : at + 4]))
        at += length
    return found
