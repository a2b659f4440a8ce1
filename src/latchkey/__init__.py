"""latchkey: token authentication for Web APIs.

The public API is small: :class:`Verifier` to check access tokens in any Python API, the
error tree, and the guards in :mod:`latchkey.guard`. The service is in :mod:`latchkey.web`.
"""

from .core.clock import Clock, ManualClock, SystemClock
from .core.errors import (
    ExpiredToken,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    KeySetUnavailable,
    LatchkeyError,
    RevokedToken,
)
from .core.keys import SigningKey, VerificationKey
from .core.keysets import StaticKeySet
from .core.verifier import AccessClaims
from .verifier import Verifier

__all__ = [
    "AccessClaims",
    "Clock",
    "ExpiredToken",
    "InsufficientScope",
    "InsufficientUserAuthentication",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidToken",
    "KeySetUnavailable",
    "LatchkeyError",
    "ManualClock",
    "RevokedToken",
    "SigningKey",
    "StaticKeySet",
    "SystemClock",
    "VerificationKey",
    "Verifier",
]
__version__ = "0.1.0"
