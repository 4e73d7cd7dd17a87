"""The level ladder: a pure decision core.

``decide(spec, status, observation, now)`` returns the next status, the Deployment scalings to
make and the Events to emit. It reads no clock and touches no network, so tests drive it with a
fake ``now``; the kopf daemon (:mod:`jeffrey_operator.runtime.reconciler`) observes, calls it, and acts.

Everything is derived from spec + status + what is observed now (level-based), so the operator can
be killed at any point and resume without repeating or skipping a transition.

Worked example (zero windows, instant readiness), a spec with CORE and COGNITIVE, target COGNITIVE:

1. status is empty → phase Promoting CORE, scale ``memory`` and ``neural-bus`` to their replicas.
2. both report ready → Validating CORE; the validation window (0s) passes with the gates
   passing → currentLevel CORE, CoolingDown; cooldown 0s → Promoting COGNITIVE, scale its modules.
3. they report ready → Validating → currentLevel COGNITIVE = target → phase Stable, Ready=True.
4. nothing changes → ``decide`` returns the same status and no action: the operator writes nothing.
5. a gate breaches → RollingBack: COGNITIVE's Deployments to 0 (CORE untouched), then RolledBack,
   holding until the generation changes, ``jeffreyos.io/retry`` gets a new value, or
   ``rollback.autoRetryAfter`` elapses.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from jeffrey_operator.core import checks as ck
from jeffrey_operator.core import conditions as c
from jeffrey_operator.core.durations import parse_duration
from jeffrey_operator.core.messages import (
    EVENT_MESSAGE_MAX,
    STATUS_MESSAGE_MAX,
    retry_hint,
    shorten,
    with_hint,
)
from jeffrey_operator.core.models import (
    TRANSITIONS_KEPT,
    CheckOnFailure,
    CheckResult,
    CheckSpec,
    CheckStatus,
    CheckWhen,
    Condition,
    ConditionStatus,
    GateResult,
    GateStatus,
    JeffreyIntegrationSpec,
    JeffreyIntegrationStatus,
    Level,
    LevelSpec,
    ModuleSpec,
    ModuleState,
    ModuleStatus,
    Phase,
    RollbackRecord,
    Transition,
)
from jeffrey_operator.core.ports import (
    MISSING,
    DeploymentObservation,
    Event,
    EventType,
    GateMode,
    GateReport,
    GateVerdict,
    Observation,
)
from jeffrey_operator.core.timestamps import format_time, parse_time
from jeffrey_operator.core.validation import Problem, validate

#: Safety valve for the in-memory step loop (each level needs at most a handful of steps).
_MAX_STEPS = 64

_RUNNING_PHASES = {Phase.PENDING, Phase.PROMOTING, Phase.VALIDATING, Phase.COOLING_DOWN}


@dataclass(frozen=True)
class ScaleAction:
    """Set ``spec.replicas`` of one Deployment."""

    deployment: str
    replicas: int
    level: Level
    #: ``spec.replicas`` as observed before this scaling.
    found: int = 0
    #: The status already wanted ``replicas``: the Deployment moved away from it (someone else
    #: scaled it, unless the observation lags behind the operator's own last scaling).
    correction: bool = False


@dataclass(frozen=True)
class Note:
    """One decision worth a log line (the runtime adds namespace and name, and only emits).

    ``kind``: ``transition`` (phase or level changed), ``rollback`` (with the gate, its value and
    the threshold crossed, or the modules that were not ready), ``hold`` (Prometheus outage,
    pause, invalid spec, gates holding a validation), ``recovery`` (Prometheus answers again).
    """

    kind: str
    reason: str
    message: str
    phase: Phase
    level: Level | None
    gate: str = ""
    value: float | None = None
    threshold: float | None = None
    modules: tuple[str, ...] = ()
    #: The level the phase works on (being promoted, validated, demoted), when there is one.
    active: Level | None = None
    #: The level check whose failure rolled back.
    check: str = ""


@dataclass(frozen=True)
class Decision:
    status: JeffreyIntegrationStatus
    actions: tuple[ScaleAction, ...] = ()
    events: tuple[Event, ...] = ()
    #: What to log about this decision, one line each (see :class:`Note`).
    notes: tuple[Note, ...] = ()
    #: Seconds until a deadline (timeout, window, cooldown, auto-retry) needs another look;
    #: None when only a change (of the object, a Deployment, the gates) can move things on.
    requeue_after: float | None = None


# ------------------------------------------------------------------------------------ time helpers


# ------------------------------------------------------------------------------------ ladder views


def defined_levels(spec: JeffreyIntegrationSpec) -> list[LevelSpec]:
    """The spec's levels, lowest first."""
    return sorted(spec.levels, key=lambda ls: ls.level.rank)


def effective_target(spec: JeffreyIntegrationSpec) -> Level | None:
    """The highest defined level at or below ``targetLevel``."""
    below = [ls.level for ls in spec.levels if ls.level.rank <= spec.target_level.rank]
    return max(below, key=lambda lv: lv.rank) if below else None


def next_level(spec: JeffreyIntegrationSpec, current: Level | None, target: Level) -> Level | None:
    """The next defined level above ``current`` and at most ``target``."""
    for ls in defined_levels(spec):
        above = current is None or ls.level.rank > current.rank
        if above and ls.level.rank <= target.rank:
            return ls.level
    return None


def previous_level(spec: JeffreyIntegrationSpec, level: Level) -> Level | None:
    """The highest defined level below ``level``."""
    below = [ls.level for ls in defined_levels(spec) if ls.level.rank < level.rank]
    return below[-1] if below else None


def ceiling(status: JeffreyIntegrationStatus) -> Level | None:
    """The highest level whose modules should be running in this phase.

    Promoting/Validating L: L. Rolling back or rolled back: CORE (never scaled down by a
    rollback). Otherwise: the current level (during a demotion ``currentLevel`` has already moved
    below the level being drained).
    """
    if status.phase == Phase.PROMOTING and ck.pre_checks_pending(status.checks, status.active_level):
        return status.current_level  # beforePromotion checks run before the level is scaled
    if status.phase in (Phase.PROMOTING, Phase.VALIDATING):
        return status.active_level
    if status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        return Level.CORE
    return status.current_level


def gate_mode(status: JeffreyIntegrationStatus) -> tuple[GateMode, Level | None]:
    """Which gates apply now, and the level they judge (input to the gate port)."""
    if status.phase in (Phase.PROMOTING, Phase.VALIDATING, Phase.COOLING_DOWN):
        return GateMode.PROMOTION, status.active_level or status.current_level
    if status.phase == Phase.PENDING:
        return GateMode.PROMOTION, status.current_level
    if status.phase == Phase.STABLE:
        return GateMode.CONTINUOUS, status.current_level
    return GateMode.NONE, status.current_level


# ------------------------------------------------------------------------------------------ engine


@dataclass
class _Step:
    """Mutable scratch state of one ``decide`` call."""

    spec: JeffreyIntegrationSpec
    obs: Observation
    now: datetime.datetime
    status: JeffreyIntegrationStatus
    events: list[Event] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)
    #: The gate mode and level the observed gate report was evaluated for.
    gates_for: tuple[GateMode, Level | None] = (GateMode.NONE, None)
    #: Deployment → replicas the status this decision started from wanted.
    wanted_before: dict[str, int] = field(default_factory=dict)

    @property
    def stamp(self) -> str:
        return format_time(self.now)

    def elapsed(self, since: str) -> float:
        start = parse_time(since)
        return 0.0 if start is None else (self.now - start).total_seconds()

    def wait_until(self, since: str, seconds: float) -> bool:
        """True while ``seconds`` have not yet passed since ``since``; records the deadline."""
        remaining = seconds - self.elapsed(since)
        if remaining > 0:
            self.deadlines.append(remaining)
            return True
        return False

    def move(
        self,
        phase: Phase,
        reason: str,
        message: str,
        *,
        current: Level | str | None = "keep",
        active: Level | str | None = "keep",
        event_type: str = "Normal",
        level_started: bool = False,
        note: Note | None = None,
        quiet: bool = False,
    ) -> None:
        """Change phase (and levels), record a transition, an Event and a log note when anything
        changed (``quiet``: no log note, another line already said it). ``message`` is cut to
        :data:`STATUS_MESSAGE_MAX` (Events carry it in full)."""
        full, message = message, shorten(message, STATUS_MESSAGE_MAX)
        st = self.status
        new_current = st.current_level if current == "keep" else current
        new_active = st.active_level if active == "keep" else active
        assert new_current is None or isinstance(new_current, Level)
        assert new_active is None or isinstance(new_active, Level)
        changed = (st.phase, st.current_level, st.active_level) != (phase, new_current, new_active)
        if not changed and (st.reason, st.message) == (reason, message):
            return
        update: dict[str, object] = {
            "phase": phase,
            "reason": reason,
            "message": message,
            "current_level": new_current,
            "active_level": new_active,
        }
        if changed:
            update["phase_since"] = self.stamp
        if level_started:
            update["level_started_at"] = self.stamp
        if changed:
            seq = st.transition_seq + 1
            transition = Transition(
                seq=seq,
                time=self.stamp,
                from_level=st.current_level,
                to_level=new_current,
                phase=phase,
                reason=reason,
                message=message,
            )
            update["transition_seq"] = seq
            update["transitions"] = [*st.transitions, transition][-TRANSITIONS_KEPT:]
        if changed or st.reason != reason or phase == Phase.INVALID:
            self.events.append(Event("Warning" if event_type == "Warning" else "Normal", reason, full))
            if not quiet:
                self.notes.append(
                    note
                    or Note(
                        kind=_note_kind(phase, reason),
                        reason=reason,
                        message=full,
                        phase=phase,
                        level=new_current,
                        active=new_active,
                    )
                )
        self.status = st.model_copy(update=update)


def _note_kind(phase: Phase, reason: str) -> str:
    if phase in (Phase.INVALID, Phase.PAUSED) or reason == c.WAITING_FOR_GATES:
        return "hold"
    return "transition"


def decide(
    spec: JeffreyIntegrationSpec,
    status: JeffreyIntegrationStatus,
    obs: Observation,
    now: datetime.datetime,
) -> Decision:
    """The next status, scalings and Events for one integration. Pure."""
    step = _Step(
        spec=spec,
        obs=obs,
        now=now,
        status=status.model_copy(deep=True),
        gates_for=gate_mode(status),
        wanted_before={m.deployment: m.desired for m in status.modules},
    )
    step.status.target_level = spec.target_level
    step.status.observed_generation = obs.generation

    problems = validate(spec, obs.deployments)
    if problems:
        return _invalid(step, problems)
    step.status.checks = ck.sync(spec, step.status.checks)

    if spec.paused:
        step.move(Phase.PAUSED, c.PAUSED, "paused by spec.paused: no promotion, demotion or rollback")
        return _finish(step, act=False)

    if step.status.phase in (Phase.INVALID, Phase.PAUSED):
        # Resume from status: the validated level is kept; the step in flight starts over.
        step.move(Phase.PENDING, c.PROMOTING, "resuming", active=None)

    for _ in range(_MAX_STEPS):
        before = step.status
        _advance(step)
        if step.status is before:
            break
    return _finish(step, act=True)


def decide_invalid(
    status: JeffreyIntegrationStatus, problems: list[Problem], generation: int, now: datetime.datetime
) -> Decision:
    """For a spec that does not even parse: ``Invalid``, no action."""
    placeholder = JeffreyIntegrationSpec.model_construct(levels=[])
    step = _Step(
        spec=placeholder,
        obs=Observation(generation=generation, deployments={}),
        now=now,
        status=status.model_copy(deep=True),
    )
    step.status.observed_generation = generation
    return _invalid(step, problems, modules=False)


def _invalid(step: _Step, problems: list[Problem], *, modules: bool = True) -> Decision:
    message = "; ".join(p.render() for p in problems)
    if len(problems) > 1:  # status.message is cut at 300 characters: say how many there are
        message = f"{len(problems)} problems: {message}"
    reason = problems[0].reason
    step.move(Phase.INVALID, reason, message, event_type="Warning")
    if modules:
        step.status.modules = _module_statuses(step)
    step.status.conditions = _conditions(step, degraded_message="", gates_known=modules)
    return Decision(status=step.status, events=tuple(step.events), notes=tuple(step.notes))


def _advance(step: _Step) -> None:
    """One state-machine step; leaves ``step.status`` untouched (same object) when settled."""
    st = step.status
    spec = step.spec
    target = effective_target(spec)
    assert target is not None  # validate() guarantees a level at or below the target
    gates = step.obs.gates

    # --- rollback in progress or holding ------------------------------------------------------
    if st.phase == Phase.ROLLING_BACK:
        if _drained_above(step, Level.CORE):
            record = st.last_rollback
            why = f"rolled back to CORE: {record.message}" if record else "rolled back to CORE"
            hint = retry_hint(step.obs.namespace, step.obs.name)
            step.move(Phase.ROLLED_BACK, c.ROLLED_BACK, with_hint(why, hint), event_type="Warning")
        return
    if st.phase == Phase.ROLLED_BACK:
        retry = _retry_reason(step)
        if retry is None:
            return
        reason, message = retry
        step.status.last_retry_token = step.obs.retry_token
        step.status.checks = [ck.reset(s, "climbing again: runs at its moment") for s in st.checks]
        step.move(Phase.PENDING, reason, message, active=None)
        return

    # --- a breach at any time but during a demotion rolls back -------------------------------
    # (only when the report was evaluated for a phase that has gates, and this one has too)
    judged = step.gates_for[0] is not GateMode.NONE and gate_mode(st)[0] is not GateMode.NONE
    if judged and gates.verdict is GateVerdict.BREACH:
        _rollback(step, c.GATE_BREACH, _breach_message(gates), gates)
        return
    # --- level checks: start those whose moment came, judge those in flight ------------------
    if st.phase in (*_RUNNING_PHASES, Phase.STABLE) and _drive_checks(step):
        return
    # --- an up level that lost readiness for longer than the readiness timeout ---------------
    if st.current_level is not None and st.phase in (*_RUNNING_PHASES, Phase.STABLE):
        unready = _unready_required(step, st.current_level, up_to_inclusive=True)
        if unready and not st.unready_since:
            step.status = st.model_copy(update={"unready_since": step.stamp})
            return
        if unready:
            if not step.wait_until(st.unready_since, parse_duration(spec.promotion.readiness_timeout)):
                _rollback(
                    step,
                    c.MODULE_UNREADY,
                    f"required modules not ready for "
                    f"{spec.promotion.readiness_timeout}: " + ", ".join(unready),
                    modules=unready,
                )
            return  # hold the climb while an up level is unready (Degraded says which)
        if st.unready_since:
            step.status = st.model_copy(update={"unready_since": ""})
            return

    # --- a failed check with onFailure: hold stops the climb where it is -----------------------
    if st.phase in (*_RUNNING_PHASES, Phase.STABLE) and _held_by_check(step):
        return
    # --- demotion: one level at a time, highest first, no gates --------------------------------
    if st.phase == Phase.DEMOTING and st.active_level is not None:
        if not _drained_level(step, st.active_level):
            return
        drained = st.active_level
        if st.current_level is not None and st.current_level.rank > target.rank:
            lower = previous_level(spec, st.current_level)
            step.move(
                Phase.DEMOTING,
                c.DEMOTING,
                f"scaling {st.current_level.value} down",
                current=lower,
                active=st.current_level,
            )
            return
        step.move(
            Phase.STABLE,
            c.TARGET_REACHED,
            f"demoted {drained.value}; stable at {_name(step.status.current_level)}",
            active=st.current_level,
        )
        return
    if st.current_level is not None and st.current_level.rank > target.rank:
        step.move(
            Phase.DEMOTING,
            c.DEMOTING,
            f"targetLevel lowered to {spec.target_level.value}: scaling {st.current_level.value} down",
            current=previous_level(spec, st.current_level),
            active=st.current_level,
        )
        return

    # --- promotion ------------------------------------------------------------------------------
    nxt = next_level(spec, st.current_level, target)
    if nxt is None:
        if st.phase != Phase.STABLE:
            step.move(Phase.STABLE, c.TARGET_REACHED, f"stable at {target.value}", active=st.current_level)
        return

    if st.phase == Phase.COOLING_DOWN and st.active_level == st.current_level:
        if step.wait_until(st.phase_since, parse_duration(spec.promotion.cooldown)):
            return
    elif st.phase == Phase.PROMOTING and st.active_level == nxt:
        before = ck.summarize([s for s in st.checks if ck.applies(s, nxt, CheckWhen.BEFORE_PROMOTION)])
        if before.verdict is not GateVerdict.PASS:
            waiting = _waiting_message(step, nxt, CheckWhen.BEFORE_PROMOTION)
            if (st.reason, st.message) != (c.WAITING_FOR_CHECKS, waiting):
                step.move(Phase.PROMOTING, c.WAITING_FOR_CHECKS, waiting)
            return
        if st.reason == c.WAITING_FOR_CHECKS:
            # Checks passed: scale the level now; the readiness timeout counts from here.
            step.move(Phase.PROMOTING, c.PROMOTING, "beforePromotion checks passed; " + _scaling(spec, nxt))
            step.status = step.status.model_copy(update={"phase_since": step.stamp})
            return
        unready = _unready_required(step, nxt, up_to_inclusive=False)
        if not unready:
            step.move(
                Phase.VALIDATING,
                c.VALIDATING,
                f"{nxt.value} is ready; validating health for {spec.promotion.validation_window}",
            )
            return
        if step.wait_until(st.phase_since, parse_duration(spec.promotion.readiness_timeout)):
            return
        _rollback(
            step,
            c.READINESS_TIMEOUT,
            f"{nxt.value} not ready within {spec.promotion.readiness_timeout}: " + ", ".join(unready),
            modules=unready,
        )
        return
    elif st.phase == Phase.VALIDATING and st.active_level == nxt:
        unready = _unready_required(step, nxt, up_to_inclusive=False)
        if unready:
            step.move(
                Phase.PROMOTING,
                c.WAITING_FOR_READY,
                f"{nxt.value} lost readiness during validation: " + ", ".join(unready),
            )
            return
        if gate_mode(st) != step.gates_for:
            step.deadlines.append(0.0)  # the gate report judged another step: evaluate again
            return
        if gates.verdict is not GateVerdict.PASS:
            # A new message when what holds changes (not when only its values move: no write
            # at every evaluation); the Event and the log line only when the hold begins.
            if st.reason != c.WAITING_FOR_GATES or _holding(st.gates) != _holding(gates.gates):
                metrics = c.get_condition(st.conditions, c.METRICS_AVAILABLE)
                outage_logged = not gates.source_available and (
                    metrics is not None and metrics.status == ConditionStatus.FALSE
                )
                step.move(
                    Phase.VALIDATING,
                    c.WAITING_FOR_GATES,
                    f"holding {nxt.value}: {gates.message or 'health gates inconclusive'}",
                    quiet=outage_logged,  # the outage's own line said it
                )
            return
        validation = ck.summarize([s for s in st.checks if ck.applies(s, nxt, CheckWhen.VALIDATION)])
        if validation.verdict is not GateVerdict.PASS:
            waiting = _waiting_message(step, nxt, CheckWhen.VALIDATION)
            if (st.reason, st.message) != (c.WAITING_FOR_CHECKS, waiting):
                step.move(Phase.VALIDATING, c.WAITING_FOR_CHECKS, waiting)
            return
        if st.reason == c.WAITING_FOR_CHECKS:
            step.move(
                Phase.VALIDATING,
                c.VALIDATING,
                f"{nxt.value} checks passed; validating health for {spec.promotion.validation_window}",
            )
            return
        window_start = st.phase_since
        passing = gates.passing_since
        started = parse_time(st.phase_since)
        if passing is not None and started is not None and passing > started:
            window_start = format_time(passing)
        if step.wait_until(window_start, parse_duration(spec.promotion.validation_window)):
            return
        if nxt == target:
            step.move(
                Phase.STABLE,
                c.TARGET_REACHED,
                f"{nxt.value} validated; stable at target",
                current=nxt,
                active=nxt,
            )
        else:
            step.move(
                Phase.COOLING_DOWN,
                c.LEVEL_VALIDATED,
                f"{nxt.value} validated; cooling down {spec.promotion.cooldown}",
                current=nxt,
                active=nxt,
            )
        return
    # A new climb of this level: its checks run again (each run gets a new attempt number).
    step.status.checks = [
        ck.reset(s, f"runs at {s.when.value} of {nxt.value}") if s.level == nxt else s for s in st.checks
    ]
    if any(ck.applies(s, nxt, CheckWhen.BEFORE_PROMOTION) for s in step.status.checks):
        reason, message = c.WAITING_FOR_CHECKS, _waiting_message(step, nxt, CheckWhen.BEFORE_PROMOTION)
    else:
        reason, message = c.PROMOTING, _scaling(spec, nxt)
    step.move(Phase.PROMOTING, reason, message, active=nxt, level_started=True)


def _scaling(spec: JeffreyIntegrationSpec, level: Level) -> str:
    return f"promoting {level.value}: scaling " + ", ".join(
        f"{m.deployment}={m.replicas}" for m in _level_spec(spec, level).modules
    )


def _holding(gates: tuple[GateStatus, ...] | list[GateStatus]) -> set[tuple[str, GateResult]]:
    """Which gates hold a validation, and how (what ``status.message`` must be about)."""
    return {(g.name, g.result) for g in gates if g.result not in (GateResult.PASS, GateResult.INACTIVE)}


def _waiting_message(step: _Step, level: Level, when: CheckWhen) -> str:
    names = [s.name for s in step.status.checks if ck.applies(s, level, when)]
    if when is CheckWhen.BEFORE_PROMOTION:
        return f"running beforePromotion checks of {level.value} ({', '.join(names)}); its Deployments wait"
    return f"holding {level.value}: waiting for validation checks ({', '.join(names)})"


# ------------------------------------------------------------------------------------------ checks


def _check_applies(step: _Step, check: CheckSpec, cs: CheckStatus) -> bool:
    """Whether a check's moment has come in this phase (see :mod:`jeffrey_operator.core.checks`)."""
    st = step.status
    if check.when is CheckWhen.AFTER_PROMOTION:
        return st.current_level is not None and check.level.rank <= st.current_level.rank
    if st.active_level != check.level or st.phase not in (Phase.PROMOTING, Phase.VALIDATING):
        return False
    if check.when is CheckWhen.BEFORE_PROMOTION:
        return st.phase == Phase.PROMOTING or cs.result is not CheckResult.PENDING
    # validation: inside the window; a run that started stays observed if readiness flickers
    return st.phase == Phase.VALIDATING or cs.result is not CheckResult.PENDING


def _drive_checks(step: _Step) -> bool:
    """Start the checks whose moment came, judge those in flight, roll back on a failure
    (``onFailure: rollback``). Returns True when the step changed something."""
    st = step.status
    interval = parse_duration(step.spec.analysis.interval)
    new_list: list[CheckStatus] = []
    retry_token = st.last_retry_token
    for check, cs in zip(step.spec.checks, st.checks, strict=True):
        new = cs
        if not _check_applies(step, check, cs):
            new_list.append(new)
            continue
        held = new.result is CheckResult.FAIL and check.on_failure is CheckOnFailure.HOLD
        asked = bool(step.obs.retry_token) and step.obs.retry_token != st.last_retry_token
        if held and (asked or step.obs.generation != new.generation):
            new = ck.reset(new, "retry requested" if asked else "spec changed")
            retry_token = step.obs.retry_token
        if new.result is CheckResult.PENDING:
            new = ck.start(check, new, step.now, integration=step.obs.name, generation=step.obs.generation)
            step.events.append(Event("Normal", c.CHECK_STARTED, f"check {check.name}: {new.message}"))
        else:
            new = ck.judge(check, new, step.obs.checks.get(check.name), step.now)
        if new.result is not cs.result or new.attempt != cs.attempt:
            _check_event(step, new)
        if new.result in ck.IN_FLIGHT:
            left = ck.remaining(check, new, step.now)
            fresh = (
                check.http is not None and new.result is CheckResult.RUNNING and cs.result is not new.result
            )
            step.deadlines.append(0.0 if fresh else min(interval, left if left is not None else interval))
        new_list.append(new)
    if new_list != st.checks or retry_token != st.last_retry_token:
        step.status = st.model_copy(update={"checks": new_list, "last_retry_token": retry_token})
        changed = True
    else:
        changed = False
    failed = _failed_check(step, CheckOnFailure.ROLLBACK)
    if failed is not None:
        check, cs = failed
        _rollback(step, c.CHECK_FAILED, f"check {check.name} failed: {cs.message}", check=check.name)
        return True
    return changed


def _failed_check(step: _Step, on_failure: CheckOnFailure) -> tuple[CheckSpec, CheckStatus] | None:
    """The first applicable check (spec order) that failed, with this ``onFailure``."""
    for check, cs in zip(step.spec.checks, step.status.checks, strict=True):
        failed = cs.result is CheckResult.FAIL and check.on_failure is on_failure
        if failed and _check_applies(step, check, cs):
            return check, cs
    return None


def _held_by_check(step: _Step) -> bool:
    """A failed ``onFailure: hold`` check: the climb stops (reason CheckFailed) until a retry."""
    failed = _failed_check(step, CheckOnFailure.HOLD)
    if failed is None:
        return False
    check, cs = failed
    hold = with_hint(
        f"holding: check {check.name} failed: {cs.message} (onFailure=hold)",
        retry_hint(step.obs.namespace, step.obs.name),
    )
    if (step.status.reason, step.status.message) != (c.CHECK_FAILED, hold):
        step.move(step.status.phase, c.CHECK_FAILED, hold, event_type="Warning")
    return True


def _check_event(step: _Step, cs: CheckStatus) -> None:
    reason = {
        CheckResult.PASS: c.CHECK_PASSED,
        CheckResult.FAIL: c.CHECK_FAILED,
        CheckResult.INCONCLUSIVE: c.CHECK_INCONCLUSIVE,
        CheckResult.INVALID: c.CHECK_INVALID,
    }.get(cs.result)
    if reason is not None:
        kind: EventType = "Normal" if cs.result is CheckResult.PASS else "Warning"
        step.events.append(Event(kind, reason, f"check {cs.name} (attempt {cs.attempt}): {cs.message}"))


def _retry_reason(step: _Step) -> tuple[str, str] | None:
    record = step.status.last_rollback
    if record is None:
        return c.RETRY_REQUESTED, "no rollback on record; resuming"
    if step.obs.generation != record.generation:
        return c.SPEC_CHANGED, f"spec changed (generation {step.obs.generation}); climbing again"
    if step.obs.retry_token and step.obs.retry_token != step.status.last_retry_token:
        return c.RETRY_REQUESTED, f"retry requested ({step.obs.retry_token}); climbing again"
    if step.spec.rollback.auto_retry_after:
        wait = parse_duration(step.spec.rollback.auto_retry_after)
        if not step.wait_until(record.time, wait):
            return (
                c.AUTO_RETRY,
                f"autoRetryAfter {step.spec.rollback.auto_retry_after} elapsed; climbing again",
            )
    return None


def _rollback(
    step: _Step,
    reason: str,
    message: str,
    gates: GateReport | None = None,
    *,
    modules: list[str] | None = None,
    check: str = "",
) -> None:
    st = step.status
    top = max(
        (lv for lv in (st.current_level, st.active_level) if lv is not None),
        key=lambda lv: lv.rank,
        default=None,
    )
    breach: GateStatus | None = gates.breach if gates else None
    threshold = None
    if breach is not None:
        threshold = breach.max if breach.max is not None and (breach.value or 0) > breach.max else breach.min
    st = st.model_copy(
        update={
            "last_rollback": RollbackRecord(
                time=step.stamp,
                from_level=top,
                reason=reason,
                message=shorten(message, EVENT_MESSAGE_MAX),
                gate=breach.name if breach else "",
                value=breach.value if breach else None,
                threshold=threshold,
                generation=step.obs.generation,
                retry_token=step.obs.retry_token,
                check=check,
            ),
            "last_retry_token": step.obs.retry_token,
            "unready_since": "",
            # Runs still in flight no longer count: their Jobs are deleted, they run again next climb.
            "checks": [
                ck.reset(s, "stopped by the rollback") if s.result in ck.IN_FLIGHT else s for s in st.checks
            ],
        }
    )
    step.status = st
    core_up = st.current_level is not None and any(ls.level == Level.CORE for ls in step.spec.levels)
    text = f"rolling back to CORE from {_name(top)}: {message}"
    step.move(
        Phase.ROLLING_BACK,
        reason,
        text,
        current=Level.CORE if core_up else None,
        active=None,
        event_type="Warning",
        note=Note(
            kind="rollback",
            reason=reason,
            message=text,
            phase=Phase.ROLLING_BACK,
            level=top,
            gate=breach.name if breach else "",
            value=breach.value if breach else None,
            threshold=threshold,
            modules=tuple(modules or ()),
            check=check,
        ),
    )


def _breach_message(gates: GateReport) -> str:
    b = gates.breach
    if b is None:
        return gates.message or "a health gate breached"
    bound = (
        f"> max {b.max:g}"
        if b.max is not None and b.value is not None and b.value > b.max
        else (f"< min {b.min:g}" if b.min is not None else "out of bounds")
    )
    value = "no data" if b.value is None else f"{b.value:g}"
    series = f" ({b.series})" if b.series else ""
    return f"gate {b.name}: {value}{series} {bound}"


# -------------------------------------------------------------------------------- observation views


def _level_spec(spec: JeffreyIntegrationSpec, level: Level) -> LevelSpec:
    return next(ls for ls in spec.levels if ls.level == level)


def _observed(step: _Step, module: ModuleSpec) -> DeploymentObservation:
    return step.obs.deployments.get(module.deployment, MISSING)


def _unready_required(step: _Step, level: Level, *, up_to_inclusive: bool) -> list[str]:
    """Required modules of ``level`` (or of every level up to it) that are not Ready."""
    out = []
    for ls in defined_levels(step.spec):
        if ls.level.rank > level.rank or (not up_to_inclusive and ls.level != level):
            continue
        for m in ls.modules:
            if not m.optional and not _observed(step, m).is_ready(m.replicas):
                out.append(m.deployment)
    return out


def _drained_level(step: _Step, level: Level) -> bool:
    return all(_observed(step, m).is_ready(0) for m in _level_spec(step.spec, level).modules)


def _drained_above(step: _Step, level: Level) -> bool:
    return all(_drained_level(step, ls.level) for ls in step.spec.levels if ls.level.rank > level.rank)


def desired_replicas(spec: JeffreyIntegrationSpec, status: JeffreyIntegrationStatus) -> dict[str, int]:
    """What every module's ``spec.replicas`` should be in this status."""
    top = ceiling(status)
    out: dict[str, int] = {}
    for ls in spec.levels:
        up = top is not None and ls.level.rank <= top.rank
        for m in ls.modules:
            out[m.deployment] = m.replicas if up else 0
    return out


def _actions(step: _Step) -> tuple[ScaleAction, ...]:
    """Scale-downs first, highest level first; then scale-ups, lowest level first."""
    desired = desired_replicas(step.spec, step.status)
    downs: list[ScaleAction] = []
    ups: list[ScaleAction] = []
    for ls in defined_levels(step.spec):
        for m in ls.modules:
            seen = _observed(step, m)
            want = desired[m.deployment]
            if not seen.exists or seen.spec_replicas == want:
                continue
            action = ScaleAction(
                m.deployment,
                want,
                ls.level,
                found=seen.spec_replicas,
                correction=step.wanted_before.get(m.deployment) == want,
            )
            (downs if want < seen.spec_replicas else ups).append(action)
    downs.sort(key=lambda a: -a.level.rank)
    return (*downs, *ups)


def _module_statuses(step: _Step) -> list[ModuleStatus]:
    desired = desired_replicas(step.spec, step.status)
    out = []
    for ls in defined_levels(step.spec):
        for m in ls.modules:
            seen = _observed(step, m)
            want = desired[m.deployment]
            if not seen.exists:
                state = ModuleState.MISSING
            elif want == 0:
                state = ModuleState.SCALED_DOWN if seen.is_ready(0) else ModuleState.PROGRESSING
            elif seen.is_ready(want):
                state = ModuleState.READY
            else:
                state = ModuleState.PROGRESSING
            out.append(
                ModuleStatus(
                    deployment=m.deployment,
                    level=ls.level,
                    optional=m.optional,
                    desired=want,
                    ready=seen.ready_replicas if seen.exists else 0,
                    state=state,
                )
            )
    return out


def _conditions(step: _Step, degraded_message: str, *, gates_known: bool = True) -> list[Condition]:
    """Every condition at the current generation (a condition not re-derived now keeps its
    status but is restamped, so none is left behind at an old ``observedGeneration``)."""
    st = step.status
    gen = step.obs.generation
    now = step.stamp
    conds = list(st.conditions)
    phase = st.phase
    conds = c.set_condition(
        conds, c.READY, phase == Phase.STABLE, st.reason, st.message, now=now, generation=gen
    )
    reconciling = phase in (*_RUNNING_PHASES, Phase.DEMOTING, Phase.ROLLING_BACK)
    conds = c.set_condition(
        conds,
        c.RECONCILING,
        reconciling,
        st.reason if reconciling else c.TARGET_REACHED if phase == Phase.STABLE else st.reason,
        st.message if reconciling else "",
        now=now,
        generation=gen,
    )
    stalled = phase in (Phase.INVALID, Phase.ROLLED_BACK)
    # A failed check with onFailure: hold waits for a human (a retry or a spec change) too.
    stalled = stalled or (st.reason == c.CHECK_FAILED and phase is not Phase.ROLLING_BACK)
    conds = c.set_condition(
        conds,
        c.STALLED,
        stalled,
        st.reason if stalled else "Progressing",
        st.message if stalled else "",
        now=now,
        generation=gen,
    )
    report = step.obs.gates
    configured: bool | None = None  # not known for a spec that does not parse
    if gates_known:
        configured = bool(step.spec.gates or step.spec.default_gates or report.gates)
        configured = configured or not report.source_available
    before = c.get_condition(conds, c.METRICS_AVAILABLE)
    conds = _gate_conditions(conds, step.obs.gates, now, gen, configured=configured)
    _note_metrics_change(step, before, c.get_condition(conds, c.METRICS_AVAILABLE))
    if step.spec.checks:
        conds = _check_condition(conds, st.checks, now, gen)
    conds = c.set_condition(
        conds,
        c.DEGRADED,
        bool(degraded_message),
        c.OPTIONAL_MODULES_DEGRADED if degraded_message else c.MODULES_HEALTHY,
        degraded_message,
        now=now,
        generation=gen,
    )
    return [cond.model_copy(update={"observed_generation": gen}) for cond in conds]


def _note_metrics_change(step: _Step, before: Condition | None, after: Condition | None) -> None:
    """A log note when Prometheus stops or starts answering (one line per outage, not per tick)."""
    if after is None or (before is not None and before.status == after.status):
        return
    st = step.status
    if after.status == ConditionStatus.FALSE:
        # The climb may have started holding in this very step: one line, and it names the
        # outage (the cause), not the hold it causes.
        step.notes[:] = [n for n in step.notes if n.reason != c.WAITING_FOR_GATES]
        message = step.obs.gates.message or after.message
        step.notes.append(
            Note("hold", after.reason, message, st.phase, st.current_level, active=st.active_level)
        )
    elif before is not None and before.status == ConditionStatus.FALSE:
        step.notes.append(
            Note("recovery", after.reason, after.message, st.phase, st.current_level, active=st.active_level)
        )


def _gate_conditions(
    conds: list[Condition], report: GateReport, now: str, gen: int, *, configured: bool | None = True
) -> list[Condition]:
    """``GatesHealthy`` and ``MetricsAvailable`` from the last evaluation (kept as they were while
    no gate applies; ``True``/``NoGatesConfigured`` when the spec has none). Messages name gates,
    never values, so they do not change at every tick."""
    if configured is False:
        conds = c.set_condition(
            conds,
            c.GATES_HEALTHY,
            True,
            c.NO_GATES_CONFIGURED,
            "no health gates configured (spec.gates is empty and defaultGates is false)",
            now=now,
            generation=gen,
        )
        return c.set_condition(
            conds,
            c.METRICS_AVAILABLE,
            True,
            c.NO_GATES_CONFIGURED,
            "no health gates configured: Prometheus is not queried",
            now=now,
            generation=gen,
        )
    if not report.gates and report.source_available:
        return conds
    applicable = [g for g in report.gates if g.result is not GateResult.INACTIVE]
    if not applicable and report.source_available:
        # Nothing was asked: MetricsAvailable keeps what the last question found.
        return c.set_condition(
            conds,
            c.GATES_HEALTHY,
            True,
            c.NO_GATES,
            f"no gate applies at this level and phase ({len(report.gates)} configured)",
            now=now,
            generation=gen,
        )
    invalid = [g.name for g in report.gates if g.result == GateResult.INVALID]
    breached = [g.name for g in report.gates if g.result == GateResult.BREACH]
    if invalid:
        healthy, reason, message = (
            False,
            c.GATES_INVALID,
            "invalid gates (not counted as breaches): " + ", ".join(invalid),
        )
    elif breached:
        healthy, reason, message = False, c.GATE_BREACH, "breached: " + ", ".join(breached)
    elif report.verdict is GateVerdict.INCONCLUSIVE:
        healthy, reason, message = (
            None,
            c.GATES_INCONCLUSIVE,
            "gates inconclusive: promotion holds, no rollback",
        )
    else:
        healthy, reason, message = True, c.GATES_PASSING, f"{len(applicable)} applicable gates pass"
    status = ConditionStatus.UNKNOWN if healthy is None else healthy
    conds = c.set_condition(conds, c.GATES_HEALTHY, status, reason, message, now=now, generation=gen)
    if report.source_available:
        return c.set_condition(
            conds,
            c.METRICS_AVAILABLE,
            True,
            c.PROMETHEUS_AVAILABLE,
            "Prometheus answers",
            now=now,
            generation=gen,
        )
    # The root cause (once, whatever the number of gates), then what it means.
    cause = report.message or "Prometheus unreachable or failing"
    return c.set_condition(
        conds,
        c.METRICS_AVAILABLE,
        False,
        c.PROMETHEUS_UNAVAILABLE,
        shorten(f"{cause}; gates are inconclusive: promotion holds, no rollback until it answers", 300),
        now=now,
        generation=gen,
    )


def _check_condition(
    conds: list[Condition], checks: list[CheckStatus], now: str, gen: int
) -> list[Condition]:
    """``ChecksHealthy`` over the runs of this climb (checks still Pending are not counted).
    Messages name checks, not their changing details."""

    def named(*results: CheckResult) -> list[str]:
        return [s.name for s in checks if s.result in results]

    failed, invalid = named(CheckResult.FAIL), named(CheckResult.INVALID)
    running, passed = named(CheckResult.RUNNING, CheckResult.INCONCLUSIVE), named(CheckResult.PASS)
    status: bool | ConditionStatus
    if failed:
        status, reason, message = False, c.CHECK_FAILED, "failed: " + ", ".join(failed)
    elif invalid:
        status, reason, message = (
            False,
            c.CHECK_INVALID,
            "cannot run (see status.checks): " + ", ".join(invalid),
        )
    elif running:
        status, reason, message = ConditionStatus.UNKNOWN, c.CHECKS_RUNNING, "running: " + ", ".join(running)
    elif passed:
        status, reason, message = True, c.CHECKS_PASSING, "passed: " + ", ".join(passed)
    else:
        status, reason, message = ConditionStatus.UNKNOWN, c.CHECKS_PENDING, "no check has run in this climb"
    return c.set_condition(conds, c.CHECKS_HEALTHY, status, reason, message, now=now, generation=gen)


def _degraded_message(step: _Step, modules: list[ModuleStatus]) -> str:
    bad = [m for m in modules if m.desired > 0 and m.state != ModuleState.READY]
    if not bad:
        return ""
    parts = [
        f"{m.deployment} ({'optional, ' if m.optional else ''}{m.state.value.lower()} {m.ready}/{m.desired})"
        for m in bad
    ]
    return "modules not ready: " + ", ".join(parts)


def _finish(step: _Step, *, act: bool) -> Decision:
    st = step.status
    modules = _module_statuses(step)
    st.modules = modules
    st.gates = list(step.obs.gates.gates) if st.phase not in (Phase.PAUSED,) else st.gates
    st.conditions = _conditions(step, _degraded_message(step, modules))
    actions = _actions(step) if act else ()
    requeue = min(step.deadlines) if step.deadlines else None
    return Decision(
        status=st, actions=actions, events=tuple(step.events), notes=tuple(step.notes), requeue_after=requeue
    )


def _name(level: Level | None) -> str:
    return level.value if level is not None else "nothing"
