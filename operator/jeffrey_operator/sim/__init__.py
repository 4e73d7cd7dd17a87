"""``jeffrey-module-sim``: a simulated Jeffrey OS module that exports the metrics contract.

The program and its building blocks live in :mod:`jeffrey_operator.sim.main`.
"""
