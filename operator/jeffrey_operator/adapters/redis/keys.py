"""Redis key names for one JeffreyIntegration: the one place that spells them.

>>> k = StateKeys.of("jeffrey", "prod", "jeffrey")
>>> k.state, k.history, k.events
('jeffrey:prod:jeffrey:state', 'jeffrey:prod:jeffrey:history', 'jeffrey:prod:jeffrey:events')
>>> k.bucket("bus")
'jeffrey:prod:jeffrey:bucket:bus'

The names are part of the public contract (``docs/state-store.md``): modules written in other
languages read them directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_KEY_PREFIX", "StateKeys", "validate_key_prefix"]

DEFAULT_KEY_PREFIX = "jeffrey"

# Kubernetes names: namespaces are DNS-1123 labels, object names DNS-1123 subdomains. Neither
# contains ':', so ``prefix:ns:name:suffix`` can never be ambiguous.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:{}-]{0,127}$")


def validate_key_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is usable as a key prefix, else raise :class:`ValueError`.

    >>> validate_key_prefix("jeffrey")
    'jeffrey'
    >>> validate_key_prefix("team-a:jeffrey")
    'team-a:jeffrey'
    >>> validate_key_prefix("has space")
    Traceback (most recent call last):
    ...
    ValueError: invalid Redis key prefix 'has space'
    """
    if not _PREFIX.match(prefix) or prefix.endswith(":"):
        raise ValueError(f"invalid Redis key prefix {prefix!r}")
    return prefix


def _check_name(kind: str, value: str) -> str:
    if not _K8S_NAME.match(value) or len(value) > 253:
        raise ValueError(f"invalid {kind} {value!r}: expected a Kubernetes name")
    return value


@dataclass(frozen=True)
class StateKeys:
    """The keys of one integration ``namespace/name`` under ``prefix``."""

    prefix: str
    namespace: str
    name: str

    @classmethod
    def of(cls, prefix: str, namespace: str, name: str) -> StateKeys:
        return cls(
            validate_key_prefix(prefix), _check_name("namespace", namespace), _check_name("name", name)
        )

    @property
    def base(self) -> str:
        return f"{self.prefix}:{self.namespace}:{self.name}"

    @property
    def state(self) -> str:
        """Hash: the current level, phase, version, ... (see :mod:`.schema`)."""
        return f"{self.base}:state"

    @property
    def history(self) -> str:
        """Stream: one entry per transition, oldest first, trimmed to a configured length."""
        return f"{self.base}:history"

    @property
    def events(self) -> str:
        """Pub/sub channel: one JSON message per change of the state hash."""
        return f"{self.base}:events"

    def bucket(self, bucket: str) -> str:
        """Hash: the state of the distributed token bucket ``bucket`` (``bus`` by default)."""
        if not re.match(r"^[A-Za-z0-9_.-]{1,63}$", bucket):
            raise ValueError(f"invalid bucket name {bucket!r}")
        return f"{self.base}:bucket:{bucket}"
