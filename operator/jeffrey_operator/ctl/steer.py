"""``retry``, ``pause`` and ``resume``: the patches, what they change, and the Argo CD warning. Pure.

* ``retry`` sets the ``jeffreyos.io/retry`` annotation to a new value (an RFC 3339 timestamp);
  after a rollback the operator climbs again when it sees a value it has not acted on.
* ``pause`` / ``resume`` merge-patch ``spec.paused``.

An object managed by Argo CD is recognised by Argo CD's resource-tracking markers (Argo CD docs,
"Resource Tracking"): the ``argocd.argoproj.io/tracking-id`` annotation (the default tracking
method since Argo CD 3.0, ``annotation`` and ``annotation+label`` methods), or the
``app.kubernetes.io/instance`` label (the ``label`` method, the default before 3.0; Helm charts
set that label too, so alone it only means "probably"), or the ``argocd.argoproj.io/instance``
label (a common custom tracking label). Spec edits on such an object are reverted by the next
sync (self-heal or a manual sync), so the user is told to change Git instead.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jeffrey_operator.core.models import RETRY_ANNOTATION, Phase
from jeffrey_operator.core.observe import parse_status
from jeffrey_operator.core.timestamps import format_time

__all__ = [
    "ARGOCD_INSTANCE_LABEL",
    "ARGOCD_TRACKING_ANNOTATION",
    "ArgoTracking",
    "Change",
    "SteerPlan",
    "argocd_tracking",
    "argocd_warning",
    "steer",
]

ARGOCD_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
#: Argo CD's default tracking label (``label`` / ``annotation+label`` methods); Helm sets it too.
ARGOCD_INSTANCE_LABEL = "app.kubernetes.io/instance"
#: A custom tracking label many Argo CD installations configure instead.
ARGOCD_CUSTOM_LABEL = "argocd.argoproj.io/instance"

Action = Literal["retry", "pause", "resume"]


@dataclass(frozen=True)
class ArgoTracking:
    """How an object is tied to an Argo CD Application."""

    application: str
    #: The marker that says so (``annotation argocd.argoproj.io/tracking-id=...``).
    marker: str
    #: False when the only marker is ``app.kubernetes.io/instance``, which Helm sets too.
    certain: bool


def argocd_tracking(body: Mapping[str, Any]) -> ArgoTracking | None:
    """The Argo CD Application that tracks ``body``, if any.

    >>> argocd_tracking({"metadata": {"annotations": {
    ...     "argocd.argoproj.io/tracking-id": "jeffrey:jeffreyos.io/JeffreyIntegration:jeffrey/jeffrey"}}})
    ArgoTracking(application='jeffrey', marker='annotation argocd.argoproj.io/tracking-id', certain=True)
    """
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    tracking = annotations.get(ARGOCD_TRACKING_ANNOTATION)
    if tracking:
        # <app>:<group>/<kind>:<namespace>/<name>; the app may be "<namespace>_<app>" (apps in any ns).
        app = str(tracking).split(":", 1)[0]
        return ArgoTracking(app, f"annotation {ARGOCD_TRACKING_ANNOTATION}", certain=True)
    if labels.get(ARGOCD_CUSTOM_LABEL):
        return ArgoTracking(str(labels[ARGOCD_CUSTOM_LABEL]), f"label {ARGOCD_CUSTOM_LABEL}", certain=True)
    if labels.get(ARGOCD_INSTANCE_LABEL):
        return ArgoTracking(
            str(labels[ARGOCD_INSTANCE_LABEL]), f"label {ARGOCD_INSTANCE_LABEL}", certain=False
        )
    return None


def argocd_warning(tracking: ArgoTracking, action: Action, namespace: str, name: str) -> str:
    """The warning to print before steering an object that Argo CD manages."""
    who = (
        f"{namespace}/{name} is managed by Argo CD (Application {tracking.application!r}, {tracking.marker})"
        if tracking.certain
        else f"{namespace}/{name} may be managed by Argo CD ({tracking.marker}={tracking.application}; "
        "Argo CD's label tracking, though Helm sets this label too)"
    )
    run = (
        f"argocd app actions run {tracking.application} {action} --kind JeffreyIntegration "
        f"--resource-name {name}"
    )
    if action == "retry":
        return (
            f"warning: {who}. The retry is an annotation: Argo CD leaves annotations it does not manage "
            f"alone, but a sync that replaces the object (Replace=true) strips it unless "
            f"{RETRY_ANNOTATION} is in the Application's ignoreDifferences. The operator acts on it "
            f"as soon as it sees it. The Argo CD way: {run} (examples/argocd/actions)."
        )
    value = "true" if action == "pause" else "false"
    return (
        f"warning: {who}. The next sync will revert spec.paused to what Git says (self-heal does it at "
        f"once): make the change in Git instead (spec.paused: {value} in the manifest), or run "
        f"{run} with spec.paused in ignoreDifferences (examples/argocd/actions)."
    )


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any

    def render(self) -> str:
        return f"{self.field}: {_show(self.before)} -> {_show(self.after)}"


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class SteerPlan:
    """The patch to send (None: nothing to change), what it changes, and a note for the user."""

    patch: dict[str, Any] | None
    changes: tuple[Change, ...]
    note: str = ""


def steer(action: Action, body: Mapping[str, Any], now: datetime.datetime) -> SteerPlan:
    """The merge patch for ``action`` on the JeffreyIntegration ``body``.

    >>> import datetime
    >>> t = datetime.datetime(2026, 11, 21, 9, 0, tzinfo=datetime.UTC)
    >>> steer("pause", {"spec": {"paused": False}, "status": {"phase": "Stable"}}, t).patch
    {'spec': {'paused': True}}
    >>> steer("resume", {"spec": {}, "status": {}}, t).patch is None
    True
    """
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = parse_status(body.get("status"))
    if action == "retry":
        before = (meta.get("annotations") or {}).get(RETRY_ANNOTATION)
        token = format_time(now)
        if token == before:  # twice in the same millisecond
            token = format_time(now + datetime.timedelta(milliseconds=1))
        note = ""
        if status.phase != Phase.ROLLED_BACK:
            note = (
                f"note: phase is {status.phase.value}; a retry only acts while RolledBack (holding after "
                "a rollback), so this changes nothing now"
            )
        return SteerPlan(
            {"metadata": {"annotations": {RETRY_ANNOTATION: token}}},
            (Change(f"metadata.annotations[{RETRY_ANNOTATION}]", before, token),),
            note,
        )
    paused = bool(spec.get("paused", False))
    want = action == "pause"
    if paused == want:
        return SteerPlan(None, (), f"spec.paused is already {_show(want)}: nothing to change")
    note = ""
    if want and status.phase == Phase.ROLLED_BACK:
        note = "note: it is holding after a rollback; paused, it will not retry until resumed"
    return SteerPlan({"spec": {"paused": want}}, (Change("spec.paused", paused, want),), note)
