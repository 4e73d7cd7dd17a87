"""The HTTP adapter of level checks: :class:`HttpChecks` implements ``HttpCheckPort``.

Job checks go through the Kubernetes adapter (:mod:`jeffrey_operator.adapters.kube`).
"""

from __future__ import annotations

from jeffrey_operator.adapters.checks.http import HttpChecks

__all__ = ["HttpChecks"]
