"""What every use-case service shares: the clock, the event sink, the audit recorder, the
hashing pool and the revocation fan-out, and who the client of a request is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from ..adapters.revocations import Revocations
from ..core.clock import Clock
from ..ops.events import Events
from .audit import AuditRecorder
from .hashing import HashingPool

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The client of a request, as the audit trail and the session list show it."""

    user_agent: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    clock: Clock
    events: Events
    audit: AuditRecorder
    hashing: HashingPool
    revocations: Revocations


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """Failures (or registrations) allowed per window before a 429 (ASVS v5 6.3.1)."""

    account: int  # failed logins per account
    address: int  # failed logins per client address
    registrations: int  # registrations per client address
