"""Behind a TLS proxy: when the direct peer is one of SUANLI_TRUSTED_PROXIES, the client's address
comes from X-Forwarded-For and the scheme from X-Forwarded-Proto (so the session cookie is
`Secure` and the sign-in throttle counts the real client). From any other peer those headers are
ignored: a client can write anything in them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import IPNetwork


def trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(peer: str, forwarded_for: str, proxies: Sequence[IPNetwork]) -> str:
    """The client behind a chain of proxies: each trusted hop appends the address it saw to
    X-Forwarded-For, so read it from the right while the hop that wrote it is trusted; what the
    first untrusted address says further left is the client's to invent."""
    address = peer
    for item in reversed([x.strip() for x in forwarded_for.split(",")]):
        if not trusted(address, proxies):
            break
        try:
            address = str(ipaddress.ip_address(item))
        except ValueError:
            break
    return address


class TrustedProxies:
    def __init__(self, app: ASGIApp, proxies: Sequence[IPNetwork]) -> None:
        self.app = app
        self.proxies = tuple(proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and trusted(client[0], self.proxies):
            forwarded_for = b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for")
            protos = [v for k, v in scope["headers"] if k == b"x-forwarded-proto"]
            scope = dict(scope)
            if forwarded_for:
                address = client_address(client[0], forwarded_for.decode("latin-1"), self.proxies)
                scope["client"] = (address, client[1])
            if protos:
                # The last value is the one the trusted peer itself set.
                proto = protos[-1].decode("latin-1").split(",")[-1].strip().lower()
                if proto in ("http", "https"):
                    secure = proto == "https"
                    if scope["type"] == "websocket":
                        scope["scheme"] = "wss" if secure else "ws"
                    else:
                        scope["scheme"] = proto
        await self.app(scope, receive, send)
