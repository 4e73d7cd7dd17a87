"""The operator with a real Redis state store: mirroring, and Redis killed in the middle of a climb."""

from __future__ import annotations

import asyncio

from jeffrey_operator.adapters.redis import RedisStateStore
from jeffrey_operator.sdk import HistoryEntry, LevelState, StateClient
from operator_fixtures import FAST, Cluster, wait_for
from redis_fixtures import RedisServer


def condition(status: dict[str, object], type_: str) -> dict[str, str] | None:
    conds = status.get("conditions") or []
    assert isinstance(conds, list)
    return next((c for c in conds if c["type"] == type_), None)


async def read_back(url: str) -> tuple[LevelState, list[HistoryEntry]]:
    client = StateClient(url, "jeffrey", "jeffrey")
    try:
        return await client.current(), await client.history(count=500)
    finally:
        await client.aclose()


def test_redis_killed_mid_climb_the_climb_completes_and_history_is_backfilled(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    cluster.store = RedisStateStore.from_settings(redis_server.url)
    cluster.start_operator()
    cluster.apply_example(promotion={**FAST, "validationWindow": "300ms"})
    wait_for(lambda: cluster.status().get("currentLevel") == "COGNITIVE", what="COGNITIVE")
    state_before, _ = asyncio.run(read_back(redis_server.url))
    assert state_before.level is not None

    redis_server.stop(kill=True)
    status = cluster.wait_phase("Stable", within=20)
    assert status["currentLevel"] == "PRODUCTION"
    unavailable = condition(status, "StateStoreAvailable")
    assert unavailable is not None and unavailable["status"] == "False"
    assert unavailable["reason"] == "StateStoreUnavailable"

    redis_server.start()
    wait_for(
        lambda: (c := condition(cluster.status(), "StateStoreAvailable")) and c["status"] == "True",
        within=40,
        what="StateStoreAvailable=True after Redis returned",
    )
    status = cluster.status()
    state, history = asyncio.run(read_back(redis_server.url))
    assert (state.level, state.phase) == ("PRODUCTION", "Stable")
    assert state.generation == cluster.ji()["metadata"]["generation"]
    seqs = sorted(e.seq for e in history if e.kind == "transition")
    assert len(seqs) == len(set(seqs))
    assert seqs == [t["seq"] for t in status["transitions"]], "every transition exactly once, none lost"
