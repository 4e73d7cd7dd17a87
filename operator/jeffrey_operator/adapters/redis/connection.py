"""Opening a Redis connection from a URL and a password, without ever showing the password.

>>> redact_url("redis://:s3cret@redis.jeffrey:6379/0")
'redis://:***@redis.jeffrey:6379/0'
>>> redact_url("rediss://app:s3cret@redis:6380/1?ssl_cert_reqs=none")
'rediss://app:***@redis:6380/1?ssl_cert_reqs=none'
>>> redact_url("redis://redis:6379/0?password=s3cret")
'redis://redis:6379/0?password=***'
>>> redact_url("redis://redis:6379")
'redis://redis:6379'
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["SCHEMES", "TRANSIENT_ERRORS", "open_redis", "redact_url", "validate_url"]

SCHEMES = ("redis", "rediss", "unix")

#: Errors that mean "Redis is not reachable right now" (connection refused or reset, socket
#: timeout, Redis still loading its data set, authentication refused): retried, then reported as
#: unavailability. Everything else (a script error, a key of the wrong type) is a bug or a
#: misconfiguration and is reported at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    asyncio.IncompleteReadError,
)

_SECRET_QUERY_KEYS = {"password", "ssl_password"}


def redact_url(url: str) -> str:
    """The URL with any password (user-info or query) replaced by ``***``: safe to log."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        query = parts.query
        if query:
            pairs = [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parse_qsl(query, True)]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable Redis URL>"


def validate_url(url: str) -> str:
    """Return ``url`` if it is a ``redis://`` or ``rediss://`` URL with a host (or a
    ``unix:///path/to/redis.sock`` socket), else raise :class:`ValueError` (whose message never
    contains the password).

    >>> validate_url("unix:///run/redis/redis.sock?db=1")
    'unix:///run/redis/redis.sock?db=1'
    """
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            ok = bool(parts.path) and parts.path != "/"
        else:
            ok = parts.scheme in SCHEMES and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"invalid Redis URL {redact_url(url)!r}: expected redis://host[:port][/db], rediss://... "
            "or unix:///path/to/socket"
        )
    return url


def open_redis(
    url: str,
    password: str | None = None,
    *,
    socket_timeout: float = 1.0,
    connect_timeout: float = 0.5,
    health_check_interval: int = 0,
) -> aioredis.Redis:
    """A ``redis.asyncio`` client for ``url`` (no I/O yet; connections open lazily).

    ``password`` is used unless the URL carries one itself. Every socket operation is bounded
    by ``socket_timeout``; redis-py's own retries are switched off because the callers retry with
    backoff and a circuit breaker of their own (:mod:`.resilience`).
    """
    validate_url(url)
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        password=password or None,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=health_check_interval,
        client_name="jeffrey-state",
        # RESP2: understood by every Redis >= 2.6 and one round trip less per new connection.
        protocol=2,
    )
    return client
