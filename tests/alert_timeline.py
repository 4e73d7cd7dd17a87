"""promtool input series built from real scrapes, so alert tests cannot drift from the exporters.

A :class:`Timeline` is one scrape per minute of promtool's clock (which starts at Unix time 0): at
each minute the test scrapes the real exporters (the operator's registry, jeffrey-module-sim's
collector) into exposition text, and :meth:`Timeline.scrape` parses it back exactly as Prometheus
would, adding the target labels Prometheus adds (``job``, ``instance``; with ``honor_labels`` the
exported labels win). A minute without a scrape of a target is a gap (``_``), as after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def series_name(name: str, labels: Mapping[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _value(v: float | None) -> str:
    if v is None:
        return "_"
    if math.isnan(v):
        return "NaN"
    return repr(float(v))


@dataclass
class FakeWallClock:
    """``time.time`` for exporters that read the wall clock at scrape time (patched in by tests)."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Timeline:
    minute: int = 0
    #: series → value at each minute (None: not scraped then).
    values: dict[str, list[float | None]] = field(default_factory=dict)
    #: metric name → label name → every value seen (for "only what is exported" checks).
    exported: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def _set(self, key: str, value: float) -> None:
        column = self.values.setdefault(key, [])
        column.extend([None] * (self.minute + 1 - len(column)))
        column[self.minute] = value

    def scrape(
        self,
        text: str,
        *,
        target: Mapping[str, str],
        keep: Callable[[Mapping[str, str]], bool] = lambda _labels: True,
    ) -> None:
        """One successful scrape of one target: its samples, and ``up`` = 1."""
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not keep(sample.labels):
                    continue
                labels = {**target, **sample.labels}  # honor_labels: the exporter's labels win
                self._set(series_name(sample.name, labels), sample.value)
                seen = self.exported.setdefault(sample.name, {})
                for key, value in sample.labels.items():
                    seen.setdefault(key, set()).add(value)
        self.up(target, 1)

    def up(self, target: Mapping[str, str], value: float) -> None:
        """Prometheus's own ``up`` for a target (0: the scrape failed)."""
        self._set(series_name("up", target), value)

    def tick(self, minutes: int = 1) -> None:
        self.minute += minutes

    def input_series(self) -> list[dict[str, str]]:
        out = []
        for key, column in sorted(self.values.items()):
            padded = column + [None] * (self.minute + 1 - len(column))
            out.append({"series": key, "values": " ".join(_value(v) for v in padded)})
        return out


def registry_text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def collector_text(collectors: Iterable[object]) -> str:
    """The exposition of ad-hoc collectors (e.g. :class:`ModuleSim`), as their /metrics serves it."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return registry_text(registry)


def humanize_duration(seconds: float) -> str:
    """Prometheus's ``humanizeDuration`` for values of a second or more."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m {secs}s"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
