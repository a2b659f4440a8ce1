"""Persistence: one small protocol and its adapters."""

from .protocol import Store

__all__ = ["Store"]
