"""Health gates: PromQL queries judged against thresholds.

* :mod:`.evaluate` judges numbers (pure: no network, no clock),
* :mod:`.prometheus` asks Prometheus (the adapter: retries, circuit breaker, per-tick cache),
* :mod:`.defaults` encodes the design documents' checklist as gates,
* :mod:`.source` is :class:`~.source.PrometheusGates`, the :class:`~jeffrey_operator.core.ports.GatePort`
  that ties them together.

Import from the submodules: importing the package alone loads nothing (``jeffreyctl`` only needs
the pure judge and should not pay for aiohttp).
"""
