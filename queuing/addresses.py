"""Whether a user's uptime check may be run: only against public internet addresses.

A check makes the uptime worker send a request from inside our network and tells its
owner what came back (up or down, the status code). Pointed at 127.0.0.1:6379, the
Redis next door, or 169.254.169.254, a cloud's metadata service, it would let anyone
with an account probe what only our machines can reach (server-side request forgery).
So a user's check must resolve only to public addresses: when it is added and again at
each run, as a name can come to resolve elsewhere. Checks the admin adds with
``101_uptime_checks.py`` are not limited, nor any check with UPTIME_ALLOW_PRIVATE=on
(a private deployment that watches its own network).

A name that changes what it resolves to between our look-up and the request's own
(DNS rebinding, within a second) is not caught: the request resolves again.
"""

from __future__ import annotations

import ipaddress
import socket


def non_public_address(host: str, port: int | None = None) -> str | None:
    """The first address ``host`` resolves to that is not a public one, or None.

    A name that does not resolve gives None: the check itself will find it down."""
    try:
        found = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for *_, socket_address in found:
        address = ipaddress.ip_address(socket_address[0].split("%", 1)[0])
        if not address.is_global:
            return str(address)
    return None
