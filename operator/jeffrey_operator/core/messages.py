"""What people read: size limits, cutting at a word, and the retry instructions. Pure.

``status.message`` (and the conditions and transitions that copy it) stays within
:data:`STATUS_MESSAGE_MAX` characters so that ``kubectl get -o wide`` and ``jeffreyctl`` stay
readable; the full detail of every gate is in ``status.gates``. Events are cut at
:data:`EVENT_MESSAGE_MAX` bytes (the API server's limit for ``note``) at a word, with an ellipsis,
so that ``kubectl describe`` never ends mid-word.

>>> shorten("gate bus-rate: 1500 > max 1000", 22)
'gate bus-rate: 1500…'
>>> shorten("short", 20)
'short'
"""

from __future__ import annotations

from jeffrey_operator.core.models import RETRY_ANNOTATION

#: Longest ``status.message`` (characters).
STATUS_MESSAGE_MAX = 300
#: Longest Event message (bytes of UTF-8).
EVENT_MESSAGE_MAX = 1024

ELLIPSIS = "…"


def shorten(text: str, limit: int) -> str:
    """``text`` when it fits in ``limit`` UTF-8 bytes, else cut at the last word boundary that
    fits with an ellipsis (at a character when a single word is longer than the limit)."""
    if len(text.encode()) <= limit:
        return text
    room = limit - len(ELLIPSIS.encode())
    cut = text.encode()[: max(room, 0)].decode(errors="ignore")
    space = cut.rfind(" ")
    at_word_end = text[len(cut) : len(cut) + 1] == " "
    if not at_word_end and space > room // 2:
        cut = cut[:space]
    return cut.rstrip(" ;,:.(") + ELLIPSIS


def retry_command(namespace: str, name: str) -> str:
    """How to ask for another climb after a rollback: a value of the annotation not used before
    (a repeated value changes nothing on the API server, so the operator never hears of it).

    >>> retry_command("jeffrey", "jeffrey")
    'kubectl annotate ji jeffrey -n jeffrey jeffreyos.io/retry="$(date +%s)" --overwrite'
    """
    target = name or "NAME"
    scope = f" -n {namespace}" if namespace else ""
    return f'kubectl annotate ji {target}{scope} {RETRY_ANNOTATION}="$(date +%s)" --overwrite'


def retry_hint(namespace: str, name: str) -> str:
    """The sentence the RolledBack message and the ``Stalled`` condition end with."""
    target = name or "NAME"
    return f"to retry: {retry_command(namespace, name)} (or: jeffreyctl retry {target})"


def drift_message(deployment: str, found: int, restored: int) -> str:
    """The Warning Event when someone else changed a managed Deployment's replicas.

    >>> drift_message("curiosity-loop", 0, 1)[:70]
    'Deployment curiosity-loop had spec.replicas 0, changed outside the ope'
    """
    return (
        f"Deployment {deployment} had spec.replicas {found}, changed outside the operator; "
        f"restored to {restored}. The operator owns spec.replicas of the Deployments it manages: "
        "pause the JeffreyIntegration (spec.paused) or remove the module from its spec to scale it by hand"
    )


def with_hint(cause: str, hint: str, limit: int = STATUS_MESSAGE_MAX) -> str:
    """``cause; hint`` within ``limit``: the cause is shortened, the hint never is."""
    room = limit - len(hint.encode()) - 2
    return f"{shorten(cause, room)}; {hint}" if room > 20 else shorten(f"{cause}; {hint}", limit)
