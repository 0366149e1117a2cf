"""Where a webhook may send (SSRF): the URL is read by the parser that connects, its host is
resolved once and judged, and the request goes to that very address.

Two ways around a guard are closed here. A URL that two parsers read differently
(`http://127.0.0.1:1\\@8.8.8.8/`: urlsplit sees 8.8.8.8, urllib3 connects to 127.0.0.1) is judged
by urllib3's own `parse_url`, and any authority with a backslash, userinfo, whitespace or a
percent sign is refused outright. A name whose DNS answer changes between the check and the
connection (rebinding) cannot matter, because the connection is pinned to the checked address.
"""

import ipaddress
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

# Anything but these in the authority is a trick on some parser: `\` and `%xx` are read as
# separators by some, `@` hides a host behind userinfo, whitespace and controls get stripped.
_AUTHORITY_REFUSED = re.compile(r"[\\@%\s\x00-\x1f\x7f]")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnresolvableHost(ValidationError):
    pass


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: connect to `address`, speak to `host`."""

    scheme: str
    host: str  # as in the URL, lowercase, IPv6 without brackets
    port: int
    request_uri: str
    address: str  # the resolved address that was judged

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def pinned_url(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return Url(scheme=self.scheme, host=address, port=self.port).url + self.request_uri


def target_check(url: str) -> Target:
    """Parse, resolve and judge a webhook URL; raise ValidationError (UnresolvableHost when DNS
    gave no answer, which may pass) for anything a webhook must not call: other schemes,
    parser tricks, numeric host spellings, and hosts that resolve to a private, loopback,
    link-local, multicast, reserved or unspecified address (unless
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS, which only tests and closed networks set)."""
    scheme, host, port, request_uri = _parse(url)
    try:
        addresses = _resolve(host, port)
    except (OSError, ValueError, UnicodeError) as exc:  # ValueError: a label IDNA cannot encode
        raise UnresolvableHost({"url": f"The host {host!r} could not be resolved."}) from exc
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        _refuse_private(host, addresses)
    return Target(scheme, host, port, request_uri, addresses[0])


def target_validate(url: str) -> None:
    target_check(url)


def _parse(url: str) -> tuple[str, str, int, str]:
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in {"http", "https"}:
        raise ValidationError({"url": "Webhook URLs must start with http:// or https://."})
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if _AUTHORITY_REFUSED.search(authority) or re.search(r"\s", url):
        raise ValidationError(
            {"url": "The URL's host part may not contain \\, @, %, spaces or control characters."}
        )
    try:
        parts = parse_url(url)  # the parser requests and urllib3 connect with
    except LocationParseError as exc:
        raise ValidationError({"url": f"Not a valid URL: {exc}."}) from exc
    if not parts.host:
        raise ValidationError({"url": "The URL has no host."})
    if parts.port == 0:
        raise ValidationError({"url": "Port 0 is not a port."})
    host = parts.host.strip("[]")
    _refuse_numeric_spellings(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, host, port, parts.request_uri


def _refuse_numeric_spellings(host: str) -> None:
    # 2130706433, 0x7f.1, 0177.0.0.1 and 127.1 all reach 127.0.0.1 through inet_aton; only the
    # four-decimals form is a plain IPv4 address, so the other spellings are not accepted at all.
    labels = host.rstrip(".").split(".")
    if all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValidationError(
                {"url": f"{host!r} is not a host name or an IPv4 address written as four numbers."}
            ) from None


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _refuse_private(host: str, addresses: list[str]) -> None:
    # Every address counts: the check must not judge one and leave the client another.
    for address in addresses:
        if not _is_public(ipaddress.ip_address(address.split("%", 1)[0])):
            raise ValidationError(
                {"url": f"{host} resolves to {address}, a private, loopback or reserved address."}
            )


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1, 2002:7f00:1::/48 and 64:ff9b::7f00:1 reach IPv4 hosts: judge the one inside.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_public(embedded)
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


class _PinnedAdapter(HTTPAdapter):
    """Connects to the URL's address (the checked IP) while TLS sends and verifies the name."""

    def __init__(self, hostname: str):
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        # urllib3 drops both keys for plain-HTTP pools, where the Host header is all that counts.
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


@contextmanager
def pinned_post(target: Target, *, data: bytes, headers: dict, timeout: float) -> Iterator[requests.Response]:
    """POST to the checked address of `target`, never to a fresh DNS answer, and yield the
    streamed response (the caller reads as much as it wants). No redirects (they could lead
    anywhere) and no proxies from the environment (a proxy would resolve the name itself)."""
    with requests.Session() as session:
        session.trust_env = False
        session.mount("http://", _PinnedAdapter(target.host))
        session.mount("https://", _PinnedAdapter(target.host))
        with session.post(
            target.pinned_url,
            data=data,
            headers={**headers, "Host": target.host_header},
            timeout=timeout,
            allow_redirects=False,
            stream=True,
        ) as response:
            yield response
