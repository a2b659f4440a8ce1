"""Adapters: what latchkey's use cases and guards need from the network, outside the core."""
