"""Observability: the events services report, Prometheus metrics, structured logs."""
