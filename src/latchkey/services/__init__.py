"""The use cases, one service per kind: tokens, sessions, accounts, keys, audit and OAuth.

Each takes the narrow store protocol it needs (store/protocol.py) and the shared
:class:`~latchkey.services.context.Context`; ``latchkey.bootstrap`` builds them all once.
"""

from .access import AccessTokens, TokenPair
from .accounts import AccountService, UserUpdate
from .audit import AuditRecorder, AuditService
from .context import ClientInfo, Context, ThrottleLimits
from .hashing import HashingPool
from .keys import KeyRotation, KeyService
from .oauth import OAuthService
from .sessions import Housekeeping, SessionService, SessionView
from .tokens import TokenService

__all__ = [
    "AccessTokens",
    "AccountService",
    "AuditRecorder",
    "AuditService",
    "ClientInfo",
    "Context",
    "HashingPool",
    "Housekeeping",
    "KeyRotation",
    "KeyService",
    "OAuthService",
    "SessionService",
    "SessionView",
    "ThrottleLimits",
    "TokenPair",
    "TokenService",
    "UserUpdate",
]
