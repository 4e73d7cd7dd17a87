"""jeffrey-operator: progressive, health-gated integration of Jeffrey OS modules on Kubernetes."""

__version__ = "0.1.0"
