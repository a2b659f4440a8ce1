"""What the service reports as it works: counters for metrics, one call per event.

The service calls an :class:`Events`; the default :class:`NullEvents` does nothing, so the
service never checks whether anyone listens.
"""

from __future__ import annotations

from typing import Literal, Protocol

RefreshOutcome = Literal["rotated", "grace", "stale", "reused", "invalid", "expired", "revoked"]


class Events(Protocol):
    def login(self, ok: bool) -> None: ...

    def refresh(self, outcome: RefreshOutcome) -> None: ...

    def revoked(self, reason: str) -> None: ...


class NullEvents:
    def login(self, ok: bool) -> None:
        pass

    def refresh(self, outcome: RefreshOutcome) -> None:
        pass

    def revoked(self, reason: str) -> None:
        pass
