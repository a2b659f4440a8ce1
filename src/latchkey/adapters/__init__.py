"""Adapters below the services: what latchkey's use cases and guards need from the network and
the disk, outside the core (Redis, the in-process deny-list and throttle, key and secret files,
JWKS fetching)."""
