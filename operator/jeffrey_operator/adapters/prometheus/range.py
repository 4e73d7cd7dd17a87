"""Recent values of a query: ``/api/v1/query_range``, for the dashboard's sparklines.

The gates ask instant queries (:mod:`.client`); a sparkline needs a matrix. This module only
turns one range answer into points per series, or raises the client's typed errors
(:class:`~.client.Unreachable`, :class:`~.client.Timeout`, :class:`~.client.ServerError`,
:class:`~.client.BadQuery`). One attempt, no retry: a sparkline that is late is simply redrawn
on the next update. Credentials travel in the :class:`~.client.Endpoint`, as for the gates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import aiohttp

from jeffrey_operator.adapters.prometheus.client import BadQuery, Endpoint, ServerError, Timeout, Unreachable

__all__ = ["RangeSeries", "parse_range_response", "query_range"]


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: its labels (without ``__name__``) and ``(unix seconds, value)``."""

    labels: tuple[tuple[str, str], ...]
    points: tuple[tuple[float, float], ...]


def parse_range_response(status: int, body: bytes) -> tuple[RangeSeries, ...]:
    """One HTTP answer of ``/api/v1/query_range`` as series (empty when there is no data). Pure.

    >>> parse_range_response(200, b'{"status":"success","data":{"resultType":"matrix","result":'
    ...     b'[{"metric":{"job":"a"},"values":[[1,"1"],[2,"NaN"],[3,"2.5"]]}]}}')
    (RangeSeries(labels=(('job', 'a'),), points=((1.0, 1.0), (3.0, 2.5))),)
    """
    try:
        doc = json.loads(body)
    except ValueError:
        raise ServerError(f"HTTP {status}: unreadable answer", status=status) from None
    if not isinstance(doc, dict):
        raise ServerError(f"HTTP {status}: unexpected answer", status=status)
    if doc.get("status") != "success":
        error = str(doc.get("error", "")) or f"HTTP {status}"
        if doc.get("errorType") in ("bad_data", "execution") or status in (400, 422):
            raise BadQuery(error, error_type=str(doc.get("errorType") or status))
        raise ServerError(f"HTTP {status} {doc.get('errorType', '')}: {error}", status=status)
    data = doc.get("data") or {}
    if data.get("resultType") != "matrix":
        raise BadQuery(f"expected a matrix, got {data.get('resultType')!r}", error_type="result_type")
    out = []
    try:
        for item in data.get("result") or []:
            labels = {str(k): str(v) for k, v in dict(item.get("metric") or {}).items() if k != "__name__"}
            points = []
            for stamp, text in item.get("values") or []:
                value = float(text)
                if not math.isnan(value):
                    points.append((float(stamp), value))
            out.append(RangeSeries(tuple(sorted(labels.items())), tuple(points)))
    except (KeyError, TypeError, ValueError) as err:
        raise ServerError(f"malformed result: {err}", status=status) from None
    return tuple(out)


async def query_range(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    promql: str,
    *,
    start: float,
    end: float,
    step: float,
) -> tuple[RangeSeries, ...]:
    """Ask ``promql`` over ``[start, end]`` (unix seconds) every ``step`` seconds; one attempt."""
    url = endpoint.url.rstrip("/") + "/api/v1/query_range"
    params = {
        "query": promql,
        "start": f"{start:.3f}",
        "end": f"{end:.3f}",
        "step": f"{max(step, 0.001):g}",
        "timeout": f"{endpoint.timeout:g}s",
    }
    try:
        async with session.get(
            url,
            params=params,
            headers=endpoint.request_headers(),
            timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
        ) as response:
            body = await response.read()
            status = response.status
    except TimeoutError:
        raise Timeout(f"no answer from {endpoint.url} within {endpoint.timeout:g}s") from None
    except (aiohttp.ClientError, OSError) as err:
        raise Unreachable(f"{endpoint.url} unreachable: {err or type(err).__name__}") from None
    return parse_range_response(status, body)
