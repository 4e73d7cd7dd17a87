"""The Redis adapter of :class:`~jeffrey_operator.core.ports.StateStorePort`.

It mirrors each JeffreyIntegration's status into Redis for the modules (``docs/state-store.md``):
a versioned hash, a history stream with every transition exactly once, and a pub/sub channel.
The CR status stays the source of truth; this store only ever catches up with it.

Atomicity and optimistic locking, two ways:

* :meth:`RedisStateStore.publish` runs one Lua script (EVALSHA: one round trip, atomic): it
  compares the status with the hash, refuses a stale writer (lower ``transitionSeq`` or lower
  generation), appends the transitions whose ``seq`` is above the recorded one (plus a gap
  marker when the status no longer keeps some), bumps ``version``, writes the hash and publishes
  the event, or does nothing at all when nothing changed.
* :meth:`RedisStateStore.update` is the general read-modify-write for tools: WATCH the hash,
  read it, let ``mutate`` compute the change, MULTI/EXEC. If anything wrote the hash in between,
  EXEC fails and :class:`StaleWrite` is raised; :meth:`RedisStateStore.update_retrying`
  re-reads and tries again.

Both paths write the same hash, and a script's write also breaks a WATCH, so they can be mixed.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from jeffrey_operator.adapters.redis.connection import TRANSIENT_ERRORS, open_redis, redact_url
from jeffrey_operator.adapters.redis.keys import DEFAULT_KEY_PREFIX, StateKeys, validate_key_prefix
from jeffrey_operator.adapters.resilience import CircuitBreaker, RetryPolicy, backoff_delay, describe_error
from jeffrey_operator.core.models import JeffreyIntegrationStatus, Level, Transition
from jeffrey_operator.core.ports import (
    Clock,
    NoTelemetry,
    StateStoreStale,
    StateStoreUnavailable,
    SystemClock,
    Telemetry,
)
from jeffrey_operator.core.state_schema import (
    F_BUS_MAX_RATE,
    F_GENERATION,
    F_LEVEL,
    F_LEVEL_INDEX,
    F_PHASE,
    F_REASON,
    F_SEQ,
    F_TARGET_LEVEL,
    F_UPDATED_AT,
    F_VERSION,
    MANAGED_FIELDS,
    StateSnapshot,
    event_message,
    level_index,
)

__all__ = ["Mutation", "RedisStateStore", "StaleWrite"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What ``mutate`` returns: the hash fields to set, or None for "no change".
Mutation = Mapping[str, str | int | float] | None


class StaleWrite(StateStoreStale):
    """The write was refused because the stored state moved on (optimistic locking).

    From :meth:`RedisStateStore.update`: the version changed since it was read (or differs from
    ``expected_version``): re-read and decide again. From :meth:`RedisStateStore.publish`: the
    store holds a newer status than the one offered (a higher ``transitionSeq`` or generation),
    so the caller is a stale writer, e.g. a replica that lost leadership: it must re-read the CR.
    """

    def __init__(self, message: str, *, version: int = 0, seq: int = 0, generation: int = 0) -> None:
        super().__init__(message)
        self.version = version
        self.seq = seq
        self.generation = generation


# The publish script. KEYS: state hash, history stream, events channel.
# ARGV: 1 transitionSeq, 2 generation, 3 level, 4 levelIndex, 5 targetLevel, 6 phase, 7 reason,
#       8 busMaxRate, 9 now (RFC 3339), 10 history MAXLEN, 11 event JSON without version,
#       12 sent_from (the caller sent every transition it keeps whose seq > sent_from),
#       13 uid of the CR ('' = unknown),
#       14.. the transitions, seq ascending, 7 values each: seq, from, to, phase, reason, message, time.
# Returns {'ok', version, appended, gaps} | {'same', version} | {'stale', version, seq, generation}
#       | {'resend', stored seq}: the caller left out transitions the store has not seen.
_PUBLISH_LUA = """
local state, history, events = KEYS[1], KEYS[2], KEYS[3]
local seq, gen = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur = redis.call('HMGET', state, 'version', 'seq', 'generation', 'level', 'phase',
                       'targetLevel', 'reason', 'busMaxRate', 'uid')
local stored_seq, stored_gen = tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
local uid = ARGV[13]
-- The CR was deleted and created again under the same name (forget() was missed): a new
-- incarnation with its own seq and generation. Its history starts afresh; the version goes on.
local reborn = cur[1] and uid ~= '' and cur[9] and cur[9] ~= '' and cur[9] ~= uid
if reborn then
  stored_seq, stored_gen = 0, 0
end
if cur[1] then
  if seq < stored_seq or gen < stored_gen then
    return {'stale', cur[1], tostring(stored_seq), tostring(stored_gen)}
  end
  if not reborn and seq == stored_seq and gen == stored_gen and cur[4] == ARGV[3] and cur[5] == ARGV[6]
     and cur[6] == ARGV[5] and cur[7] == ARGV[7] and cur[8] == ARGV[8]
     and (uid == '' or cur[9] == uid) then
    return {'same', cur[1]}
  end
end
if stored_seq < tonumber(ARGV[12]) then
  return {'resend', tostring(stored_seq)}
end
if reborn then
  redis.call('DEL', history)
end
local version
if cur[1] then
  version = redis.call('HINCRBY', state, 'version', 1)
else
  -- A new hash starts at the server time in ms, so that a hash re-created after forget() or a
  -- data loss still continues above every version handed out before.
  local t = redis.call('TIME')
  version = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local v = string.format('%d', version)
local now, maxlen = ARGV[9], ARGV[10]
local appended, gaps, expected = 0, 0, stored_seq + 1
local function gap(first, last)
  redis.call('XADD', history, 'MAXLEN', '~', maxlen, '*', 'kind', 'gap', 'seq', tostring(last),
             'from', '', 'to', '', 'phase', '', 'reason', 'HistoryGap',
             'message', 'transitions ' .. first .. '..' .. last .. ' were not recorded',
             'version', v, 'time', now, 'gapFrom', tostring(first), 'gapTo', tostring(last))
  gaps = gaps + 1
end
for i = 14, #ARGV, 7 do
  local tseq = tonumber(ARGV[i])
  if tseq >= expected and tseq <= seq then
    if tseq > expected then gap(expected, tseq - 1) end
    redis.call('XADD', history, 'MAXLEN', '~', maxlen, '*', 'kind', 'transition', 'seq', ARGV[i],
               'from', ARGV[i + 1], 'to', ARGV[i + 2], 'phase', ARGV[i + 3], 'reason', ARGV[i + 4],
               'message', ARGV[i + 5], 'version', v, 'time', ARGV[i + 6])
    appended = appended + 1
    expected = tseq + 1
  end
end
if seq >= expected then gap(expected, seq) end
redis.call('HSET', state, 'level', ARGV[3], 'levelIndex', ARGV[4], 'targetLevel', ARGV[5],
           'phase', ARGV[6], 'version', v, 'generation', ARGV[2], 'updatedAt', now,
           'reason', ARGV[7], 'seq', ARGV[1], 'busMaxRate', ARGV[8])
if uid ~= '' then redis.call('HSET', state, 'uid', uid) end
redis.call('PUBLISH', events, '{"version":' .. v .. ',' .. string.sub(ARGV[11], 2))
return {'ok', v, appended, gaps}
"""

# KEYS: state hash, history stream, events channel, bus bucket. ARGV: 1 event JSON without version.
# Deletes the keys and announces the deletion with the next version. Returns that version or 0.
_FORGET_LUA = """
local v = redis.call('HGET', KEYS[1], 'version')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
if not v then return 0 end
local nv = string.format('%d', tonumber(v) + 1)
redis.call('PUBLISH', KEYS[3], '{"version":' .. nv .. ',' .. string.sub(ARGV[1], 2))
return nv
"""


class _OutcomeUnknown(Exception):
    """The connection broke after EXEC was sent: the write may or may not have happened."""


def _level_name(level: Level | None) -> str:
    return "" if level is None else level.value


def _status_fields(status: JeffreyIntegrationStatus, *, generation: int, bus_max_rate: int) -> dict[str, str]:
    """The hash fields (but ``version`` and ``updatedAt``) that mirror ``status``."""
    level = status.current_level
    return {
        F_LEVEL: _level_name(level),
        F_LEVEL_INDEX: str(level_index(level)),
        F_TARGET_LEVEL: _level_name(status.target_level),
        F_PHASE: status.phase.value,
        F_GENERATION: str(generation),
        F_REASON: status.reason,
        F_SEQ: str(status.transition_seq),
        F_BUS_MAX_RATE: str(bus_max_rate),
    }


def _transition_args(transitions: Sequence[Transition]) -> list[str]:
    args: list[str] = []
    for t in transitions:
        args += [
            str(t.seq),
            _level_name(t.from_level),
            _level_name(t.to_level),
            t.phase.value,
            t.reason,
            t.message,
            t.time,
        ]
    return args


#: Store calls: a second attempt gets past a pooled connection that a Redis restart left broken;
#: each call is bounded (2 s, all attempts included) so the loop never waits long on Redis.
STORE_RETRY = RetryPolicy(attempts=3, base_delay=0.02, max_delay=0.2, deadline=2.0)


class RedisStateStore:
    """Mirrors JeffreyIntegration status into Redis; see the module docstring and
    ``docs/state-store.md``. One instance serves every integration of the operator.

    Every call is bounded (socket timeout, :class:`RetryPolicy` deadline) and goes through a
    :class:`CircuitBreaker`: while Redis is down, calls raise :class:`StateStoreUnavailable`
    at once, and only one probe every few seconds reaches the network.

    Build it with :meth:`from_settings`; a ``client`` passed directly must have
    ``decode_responses=True`` and redis-py's own retries off (see :func:`.connection.open_redis`),
    or a call may block for redis-py's backoff instead of failing fast.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        history_maxlen: int = 1000,
        display_url: str = "redis",
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if history_maxlen < 1:
            raise ValueError("history_maxlen must be at least 1")
        self._redis = client
        self._prefix = validate_key_prefix(key_prefix)
        self._maxlen = history_maxlen
        self._display_url = redact_url(display_url)
        self._retry = retry or STORE_RETRY
        self._breaker = breaker or CircuitBreaker()
        self._clock: Clock = clock or SystemClock()
        self._publish_script = client.register_script(_PUBLISH_LUA)
        self._forget_script = client.register_script(_FORGET_LUA)
        #: (namespace, name) -> a seq the store is known to have recorded: publish sends only the
        #: transitions above it (the script asks for the rest when the store is behind).
        self._recorded_seq: dict[tuple[str, str], int] = {}
        #: ``jeffrey_state_store_up`` follows every call's outcome.
        self._telemetry: Telemetry = telemetry or NoTelemetry()

    @classmethod
    def from_settings(
        cls,
        url: str,
        password: str | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        history_maxlen: int = 1000,
        *,
        socket_timeout: float = 1.0,
        connect_timeout: float = 0.5,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
        telemetry: Telemetry | None = None,
    ) -> RedisStateStore:
        """Connect (lazily) to ``url`` (``redis://``, ``rediss://``, ``unix://``) with ``password`` (from
        ``JEFFREY_REDIS_PASSWORD``; used when the URL carries none). Raises :class:`ValueError`
        for a malformed URL; never logs or shows the password."""
        client = open_redis(url, password, socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        return cls(
            client,
            key_prefix=key_prefix,
            history_maxlen=history_maxlen,
            display_url=url,
            retry=retry,
            breaker=breaker,
            clock=clock,
            telemetry=telemetry,
        )

    def __repr__(self) -> str:
        return (
            f"RedisStateStore(url={self._display_url!r}, key_prefix={self._prefix!r}, "
            f"history_maxlen={self._maxlen}, breaker={self._breaker.state!r})"
        )

    __str__ = __repr__

    @property
    def available(self) -> bool:
        """False while the circuit breaker is open (the last call found Redis unreachable)."""
        return self._breaker.state == "closed"

    def keys(self, namespace: str, name: str) -> StateKeys:
        return StateKeys.of(self._prefix, namespace, name)

    async def aclose(self) -> None:
        await self._redis.aclose()

    # ----------------------------------------------------------------------------- the port

    async def publish(
        self,
        namespace: str,
        name: str,
        status: JeffreyIntegrationStatus,
        *,
        generation: int,
        bus_max_rate: int,
        uid: str = "",
    ) -> int:
        """Mirror ``status`` into the hash, append every transition whose ``seq`` is above the
        recorded one (exactly once, in order), publish the event; return the store's version.

        ``uid`` (``metadata.uid``, optional) tells incarnations of a name apart: when the CR was
        deleted and created again without :meth:`forget` being called, the new one's lower
        ``transitionSeq`` and generation would otherwise be refused as stale forever. With a
        different uid the history starts afresh (the version still only increases).

        Cheap when nothing changed (one EVALSHA with a dozen short arguments, no write, no
        event). Raises :class:`StaleWrite` when the store holds a higher ``transitionSeq`` or
        generation, :class:`StateStoreUnavailable` when Redis cannot be reached.
        """
        keys = self.keys(namespace, name)
        fields = _status_fields(status, generation=generation, bus_max_rate=bus_max_rate)
        kept = sorted(
            {t.seq: t for t in status.transitions if 0 < t.seq <= status.transition_seq}.values(),
            key=lambda t: t.seq,
        )
        known = self._recorded_seq.get((namespace, name), 0)
        now = self._clock.now().astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        body = event_message(namespace, name, {**fields, F_UPDATED_AT: now}, version=None)

        def argv(sent_from: int) -> list[str]:
            head = [
                fields[F_SEQ],
                fields[F_GENERATION],
                fields[F_LEVEL],
                fields[F_LEVEL_INDEX],
                fields[F_TARGET_LEVEL],
                fields[F_PHASE],
                fields[F_REASON],
                fields[F_BUS_MAX_RATE],
                now,
                str(self._maxlen),
                body,
                str(sent_from),
                uid,
            ]
            return head + _transition_args([t for t in kept if t.seq > sent_from])

        async def run() -> list[Any]:
            script_keys = [keys.state, keys.history, keys.events]
            reply: list[Any] = await self._publish_script(keys=script_keys, args=argv(known))
            if reply[0] == "resend":  # the store is behind what we believed: send all we keep
                reply = await self._publish_script(keys=script_keys, args=argv(0))
            return reply

        reply = await self._call("publish", run)
        outcome = reply[0]
        if outcome == "stale":
            self._recorded_seq.pop((namespace, name), None)
            stored_version, stored_seq, stored_gen = (int(x) for x in reply[1:4])
            raise StaleWrite(
                f"{namespace}/{name}: the store holds transitionSeq {stored_seq} and generation "
                f"{stored_gen}, refusing transitionSeq {status.transition_seq} and generation {generation}",
                version=stored_version,
                seq=stored_seq,
                generation=stored_gen,
            )
        if outcome not in ("ok", "same"):  # pragma: no cover - the script only returns these
            raise StateStoreUnavailable(f"unexpected answer of the publish script: {outcome!r}")
        self._recorded_seq[(namespace, name)] = status.transition_seq
        if outcome == "ok" and int(reply[3]):
            log.warning(
                "%s/%s: the state store missed transitions the status no longer keeps; "
                "a gap marker was written to the history",
                namespace,
                name,
            )
        return int(reply[1])

    async def forget(self, namespace: str, name: str) -> None:
        """The integration is gone: delete its hash, history and bus bucket, and announce it on
        the events channel (``{"version": V+1, "deleted": true, ...}``) so subscribers stop
        acting on it. A hash created again later starts at a higher version (see the contract).
        """
        keys = self.keys(namespace, name)
        now = self._clock.now().astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        body = event_message(namespace, name, {"deleted": "true", F_UPDATED_AT: now}, version=None)
        body = body.replace('"deleted":"true"', '"deleted":true')

        async def run() -> Any:
            return await self._forget_script(
                keys=[keys.state, keys.history, keys.events, keys.bucket("bus")], args=[body]
            )

        await self._call("forget", run)
        self._recorded_seq.pop((namespace, name), None)

    # ------------------------------------------------------------------------------ the rest

    async def ping(self) -> float:
        """Round-trip time to Redis in seconds; :class:`StateStoreUnavailable` if unreachable
        (or if the circuit breaker is open and it is not yet time to probe)."""
        loop = asyncio.get_running_loop()

        async def run() -> float:
            start = loop.time()
            await self._redis.ping()
            return loop.time() - start

        return await self._call("ping", run)

    async def read(self, namespace: str, name: str) -> StateSnapshot:
        """The state hash as it is now (``exists`` False when there is none)."""
        keys = self.keys(namespace, name)

        async def run() -> StateSnapshot:
            return StateSnapshot.from_hash(await self._redis.hgetall(keys.state))

        return await self._call("read", run)

    async def update(
        self,
        namespace: str,
        name: str,
        mutate: Callable[[StateSnapshot], Mutation],
        expected_version: int | None = None,
    ) -> int:
        """Optimistic read-modify-write of the state hash; returns the new version.

        WATCH the hash, read it, call ``mutate(snapshot)`` (no I/O in there: it may run again),
        then MULTI: set the fields it returned, ``version`` +1, ``updatedAt``, publish the event;
        EXEC. Raises :class:`StaleWrite` if the version is not ``expected_version`` (when given)
        or if anything wrote the hash between the read and EXEC. ``mutate`` returning None
        changes nothing and returns the current version. ``version`` and ``updatedAt`` are the
        store's to set. Connection errors are retried up to EXEC, not after it (EXEC may have
        been applied): then :class:`StateStoreUnavailable` means "outcome unknown, re-read".
        """
        keys = self.keys(namespace, name)

        async def run() -> int:
            exec_sent = False
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(keys.state)
                    snapshot = StateSnapshot.from_hash(await pipe.hgetall(keys.state))
                    if expected_version is not None and snapshot.version != expected_version:
                        raise StaleWrite(
                            f"{namespace}/{name}: version is {snapshot.version}, expected {expected_version}",
                            version=snapshot.version,
                            seq=snapshot.seq,
                            generation=snapshot.generation,
                        )
                    changes = mutate(snapshot)
                    if changes is None:
                        return snapshot.version
                    managed = MANAGED_FIELDS & set(changes)
                    if managed:
                        raise ValueError(f"mutate may not set {sorted(managed)}: the store maintains them")
                    if snapshot.exists:
                        version = snapshot.version + 1
                    else:  # same rule as the publish script: a new hash starts at server time in ms
                        seconds, micros = await pipe.time()
                        version = int(seconds) * 1000 + int(micros) // 1000
                    now = self._clock.now().astimezone(datetime.UTC).isoformat(timespec="milliseconds")
                    merged = {
                        **snapshot.fields,
                        **{k: str(v) for k, v in changes.items()},
                        F_VERSION: str(version),
                        F_UPDATED_AT: now,
                    }
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(keys.state, mapping=cast(Any, merged))
                    pipe.publish(keys.events, event_message(namespace, name, merged, version=version))
                    exec_sent = True
                    await pipe.execute()
                    return version
                except WatchError as exc:
                    # redis-py turns a connection error while watching into a WatchError.
                    cause = exc.__context__
                    if isinstance(cause, TRANSIENT_ERRORS):
                        if exec_sent:
                            raise _OutcomeUnknown() from cause
                        raise cause from None
                    raise StaleWrite(f"{namespace}/{name}: the state changed during the update") from None
                except TRANSIENT_ERRORS as exc:
                    if exec_sent:
                        raise _OutcomeUnknown() from exc
                    raise

        return await self._call("update", run)

    async def update_retrying(
        self,
        namespace: str,
        name: str,
        mutate: Callable[[StateSnapshot], Mutation],
        *,
        attempts: int = 50,
        base_delay: float = 0.001,
        max_delay: float = 0.05,
    ) -> int:
        """:meth:`update` until it is not refused, re-reading the fresh state each time
        (``mutate`` decides again on it), with jittered exponential backoff between attempts.
        Raises the last :class:`StaleWrite` after ``attempts`` refusals."""
        for attempt in range(attempts):
            try:
                return await self.update(namespace, name, mutate)
            except StaleWrite:
                if attempt + 1 >= attempts:
                    raise
                await asyncio.sleep(backoff_delay(attempt, base=base_delay, cap=max_delay, jitter=0.5))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ retries and breaker

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` through the circuit breaker, retrying transient errors with backoff, all
        within the policy's deadline. Redis answering with an error is not an outage."""
        if not self._breaker.allow():
            raise StateStoreUnavailable(
                f"Redis at {self._display_url} is unavailable ({self._last_error}); "
                f"next attempt in {self._breaker.retry_in:.1f}s"
            )
        last: BaseException | None = None
        try:
            async with asyncio.timeout(self._retry.deadline):
                for attempt in range(self._retry.attempts):
                    try:
                        result = await op()
                    except TRANSIENT_ERRORS as exc:
                        last = exc
                        if attempt + 1 < self._retry.attempts:
                            await asyncio.sleep(self._retry.delay(attempt))
                        continue
                    except _OutcomeUnknown as exc:
                        last = exc.__cause__
                        break
                    except StaleWrite:
                        self._succeeded()
                        raise
                    except RedisError as exc:
                        self._succeeded()
                        raise StateStoreUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc
                    self._succeeded()
                    return result
        except TimeoutError as exc:  # the deadline
            last = last or exc
        except BaseException:  # cancelled, or a bug in ``op``: the outcome is unknown
            self._breaker.record_abandoned()
            raise
        self._failed(what, last)
        raise StateStoreUnavailable(
            f"Redis at {self._display_url} is unavailable: {self._last_error}"
        ) from last

    @property
    def _last_error(self) -> str:
        return describe_error(self._breaker.last_error)

    def _succeeded(self) -> None:
        if self._breaker.state != "closed":
            log.info("state store %s is reachable again", self._display_url)
        self._breaker.record_success()
        self._telemetry.set_state_store_up(True)

    def _failed(self, what: str, exc: BaseException | None) -> None:
        was = self._breaker.state
        self._breaker.record_failure(exc or TimeoutError(f"{what} gave no answer"))
        self._telemetry.set_state_store_up(False)
        if was == "closed" and self._breaker.state == "open":
            log.warning(
                "state store %s unavailable (%s during %s); failing fast for %.1fs",
                self._display_url,
                self._last_error,
                what,
                self._breaker.retry_in,
            )
