"""Which URLs the operator may send requests to: the egress policy.

Whoever may write a JeffreyIntegration can make the operator send requests (the Prometheus URL,
http checks, webhook and Alertmanager sinks), so every such URL passes this policy, as a
multi-tenant service would guard it:

- an operator-wide **allow-list** of hosts and CIDRs (``--egress-allow``, chart value
  ``egress.allow``); empty means "any host", which suits a single-team cluster;
- **link-local and cloud-metadata addresses** (169.254.0.0/16, fe80::/10, fd00:ec2::254 and the
  metadata host names) are refused by default, even with an empty allow-list: only an allow entry
  that names such an address (a CIDR inside the refused range) opens it;
- no credentials in the URL (they come from a ``secretKeyRef``), http(s) only;
- a redirect is followed only to the same scheme, host and port (:func:`redirect_allowed`).

The policy is pure: :meth:`EgressPolicy.refusal` judges a URL as written (what validation can know)
and, given the addresses its host resolved to, judges those too. The adapter that connects resolves
the host and asks again, so a host name that resolves to a refused address is refused as well.

>>> policy = EgressPolicy.parse(["*.svc.cluster.local", "hooks.slack.com"])
>>> policy.refusal("http://prometheus.monitoring.svc.cluster.local:9090") is None
True
>>> print(policy.refusal("http://169.254.169.254/latest/meta-data/"))  # doctest: +ELLIPSIS
http://169.254.169.254/latest/meta-data/ is refused: 169.254.169.254 is a link-local address (cloud...
>>> print(policy.refusal("https://hooks.example/jeffrey").why)
host hooks.example is not in the operator's egress allow-list (*.svc.cluster.local, hooks.slack.com)

With a CIDR in the list, a host name not allowed by name is judged by the addresses it resolves to:

>>> policy = EgressPolicy.parse(["10.0.0.0/8"])
>>> policy.refusal("http://alertmanager:9093") is None              # as written: wait for DNS
True
>>> print(policy.refusal("http://alertmanager:9093", ["192.168.1.5"]).why)
alertmanager resolves to 192.168.1.5, which is not in the operator's egress allow-list (10.0.0.0/8)
>>> policy.refusal("http://alertmanager:9093", ["10.1.2.3"]) is None
True
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from jeffrey_operator.core.checks import check_urls
from jeffrey_operator.core.models import JeffreyIntegrationSpec
from jeffrey_operator.core.validation import Problem

__all__ = [
    "EGRESS_REFUSED",
    "REFUSED_BY_DEFAULT",
    "EgressPolicy",
    "EgressPolicyError",
    "Refusal",
    "redirect_allowed",
    "spec_urls",
    "url_problems",
]

#: The Invalid reason (condition and Event) of a spec whose URL the policy refuses.
EGRESS_REFUSED = "EgressRefused"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Refused unless an allow entry names an address inside them, each with the reason shown.
REFUSED_BY_DEFAULT: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address (cloud metadata lives there)"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "the AWS IPv6 metadata address"),
    (ipaddress.ip_network("fe80::/10"), "an IPv6 link-local address"),
)
#: Host names of cloud metadata services (GCP; Azure and AWS use 169.254.169.254).
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})


class EgressPolicyError(ValueError):
    """An allow-list entry the policy cannot understand (raised at start-up)."""


@dataclass(frozen=True)
class Refusal:
    """Why a URL may not be requested."""

    url: str
    why: str

    def __str__(self) -> str:
        return f"{self.url} is refused: {self.why}"

    def problem(self, field: str) -> Problem:
        """The validation problem that makes the integration Invalid."""
        return Problem(
            field=field,
            reason=EGRESS_REFUSED,
            message=str(self),
            fix="use a URL the operator's egress allow-list permits (chart value egress.allow, "
            "flag --egress-allow) or ask the operator's administrators to allow it",
        )


def _parse_ip(host: str) -> IPAddress | None:
    """The address a host literal denotes, including the forms C resolvers accept
    (``2852039166``, ``0xa9.0xfe.0xa9.0xfe``, ``169.254.43518``) and IPv4-mapped IPv6."""
    try:
        addr: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        try:
            # inet_aton only parses (no lookup): it knows the legacy numeric IPv4 notations.
            addr = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class EgressPolicy:
    """The operator-wide egress allow-list. The default instance allows any host but refuses
    link-local and cloud-metadata addresses."""

    #: Exact host names (lower case, no trailing dot).
    hosts: frozenset[str] = frozenset()
    #: ``*.suffix`` entries, stored as ``.suffix``: any subdomain of it (not the suffix itself).
    suffixes: tuple[str, ...] = ()
    #: Allowed networks; an address inside one is allowed whatever its host name.
    networks: tuple[IPNetwork, ...] = ()
    #: The entries as written, for messages.
    entries: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressPolicy:
        """Build from allow-list entries: ``host.name``, ``*.domain``, ``10.0.0.0/8``, ``10.1.2.3``,
        ``fd00::/8``. Blank entries are skipped; anything else raises :class:`EgressPolicyError`."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        kept: list[str] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            kept.append(entry)
            if entry == "*":
                raise EgressPolicyError(
                    "egress allow entry '*' is not supported: leave the allow-list empty to allow any host"
                )
            if entry.startswith("*."):
                suffix = entry[1:]
                if not _is_hostname(suffix[1:]):
                    raise EgressPolicyError(f"egress allow entry {raw!r} is not a valid '*.domain'")
                suffixes.append(suffix)
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or not _is_hostname(entry):
                raise EgressPolicyError(
                    f"egress allow entry {raw!r} is neither a host name, a '*.domain' nor an IP/CIDR"
                )
            hosts.add(entry)
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks), tuple(kept))

    @property
    def allows_any_host(self) -> bool:
        return not self.entries

    def _listed(self) -> str:
        return ", ".join(self.entries)

    def _allowed_by_name(self, host: str) -> bool:
        return self.allows_any_host or host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def _address_refusal(self, addr: IPAddress, *, named: bool) -> str | None:
        """Why ``addr`` is refused, completing "<addr> is …" (None: allowed). ``named``: the host
        name is allowed already, so only the refused-by-default ranges apply."""
        in_allowed = [n for n in self.networks if n.version == addr.version and addr in n]
        for refused, why in REFUSED_BY_DEFAULT:
            if refused.version != addr.version or addr not in refused:
                continue
            # Only an allow entry inside the refused range opens it: 0.0.0.0/0 does not.
            if not any(n.subnet_of(refused) for n in in_allowed):  # type: ignore[arg-type]
                return why
        if named or self.allows_any_host or in_allowed:
            return None
        return f"not in the operator's egress allow-list ({self._listed()})"

    def refusal(self, url: str, addresses: Sequence[str] | None = None) -> Refusal | None:
        """Why ``url`` may not be requested, or None.

        Without ``addresses`` this judges the URL as written; a host name that the allow-list can
        only judge by its addresses (the list has CIDRs) passes for now. With ``addresses`` (what
        the host resolved to) every address must pass too.
        """
        if any(ch.isspace() or ch == "\\" or ord(ch) < 0x20 for ch in url):
            return Refusal(url, "the URL contains whitespace, control characters or a backslash")
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError as exc:
            return Refusal(url, f"the URL cannot be parsed ({exc})")
        if parts.scheme not in ("http", "https"):
            return Refusal(url, f"scheme {parts.scheme or '(none)'!r} is not http or https")
        if not host:
            return Refusal(url, "the URL has no host")
        if parts.username is not None or parts.password is not None:
            return Refusal(url, "credentials in the URL are not accepted (use a secretKeyRef)")
        literal = _parse_ip(host)
        if literal is not None:
            why = self._address_refusal(literal, named=False)
            return Refusal(url, f"{literal} is {why}") if why else None
        if host in METADATA_HOSTS and host not in self.hosts:
            return Refusal(url, f"{host} is a cloud metadata service")
        named = self._allowed_by_name(host)
        if not named and not self.networks:
            return Refusal(url, f"host {host} is not in the operator's egress allow-list ({self._listed()})")
        for address in addresses or ():
            addr = _parse_ip(address)
            if addr is None:
                return Refusal(url, f"{host} resolves to {address!r}, which is not an IP address")
            why = self._address_refusal(addr, named=named)
            if why:
                return Refusal(url, f"{host} resolves to {addr}, which is {why}")
        return None

    def check(self, url: str, field: str) -> Problem | None:
        """:meth:`refusal` as a validation problem of ``field``."""
        refused = self.refusal(url)
        return refused.problem(field) if refused else None


def redirect_allowed(from_url: str, to_url: str) -> bool:
    """A redirect is followed only when it stays on the same scheme, host and port.

    >>> redirect_allowed("http://a:80/x", "/y"), redirect_allowed("http://a/x", "http://a:80/y")
    (True, True)
    >>> redirect_allowed("http://a/x", "http://169.254.169.254/"), redirect_allowed("https://a/", "http://a/")
    (False, False)
    """
    src = urlsplit(from_url)
    dst = urlsplit(to_url)
    if not dst.netloc and not dst.scheme:
        return True  # a relative reference stays where it is
    default = {"http": 80, "https": 443}
    try:
        src_port = src.port or default.get(src.scheme)
        dst_port = dst.port or default.get(dst.scheme)
    except ValueError:
        return False
    return (src.scheme, src.hostname, src_port) == (dst.scheme, dst.hostname, dst_port)


def _is_hostname(name: str) -> bool:
    labels = name.split(".")
    return bool(name) and len(name) <= 253 and all(_is_label(label) for label in labels)


def _is_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in label)
    )


def spec_urls(spec: JeffreyIntegrationSpec) -> list[tuple[str, str]]:
    """Every URL in a spec the operator would send requests to, as ``(field, url)``. The
    Prometheus URL counts only when gates use it (its default names no host of this cluster)."""
    out = []
    if spec.gates or spec.default_gates:
        out.append(("spec.analysis.prometheus.url", spec.analysis.prometheus.url))
    out.extend(check_urls(spec))
    for i, sink in enumerate(spec.notifications):
        if sink.alertmanager is not None:
            out.append((f"spec.notifications[{i}].alertmanager.url", sink.alertmanager.url))
        if sink.webhook is not None:
            out.append((f"spec.notifications[{i}].webhook.url", sink.webhook.url))
    return out


def url_problems(spec: JeffreyIntegrationSpec, policy: EgressPolicy) -> list[Problem]:
    """The spec's URLs the policy refuses as written (the adapters check resolved addresses)."""
    return [p for f, url in spec_urls(spec) if (p := policy.check(url, f)) is not None]
