"""Statuses along a made-up climb, for the state store tests: ``status_at(seq)`` is what the
operator's status says after transition ``seq`` (keeping the last ``keep`` transitions)."""

from __future__ import annotations

from jeffrey_operator.core.models import TRANSITIONS_KEPT, JeffreyIntegrationStatus, Level, Phase, Transition

_PHASES = (Phase.PROMOTING, Phase.VALIDATING, Phase.COOLING_DOWN)


def level_after(seq: int) -> Level | None:
    """Transition 1 promotes CORE, every third transition reaches the next level."""
    if seq <= 0:
        return None
    return Level.ordered()[min((seq - 1) // 3, 5)]


def transition(seq: int) -> Transition:
    return Transition(
        seq=seq,
        time=f"2024-11-21T12:{seq // 60 % 60:02d}:{seq % 60:02d}Z",
        from_level=level_after(seq - 1),
        to_level=level_after(seq),
        phase=_PHASES[(seq - 1) % 3],
        reason=f"Step{seq}",
        message=f"transition {seq}",
    )


def status_at(
    seq: int, *, keep: int = TRANSITIONS_KEPT, reason: str | None = None
) -> JeffreyIntegrationStatus:
    transitions = [transition(s) for s in range(max(1, seq - keep + 1), seq + 1)]
    return JeffreyIntegrationStatus(
        phase=transitions[-1].phase if transitions else Phase.PENDING,
        reason=reason if reason is not None else (transitions[-1].reason if transitions else ""),
        current_level=level_after(seq),
        target_level=Level.PRODUCTION,
        transitions=transitions,
        transition_seq=seq,
    )
