"""The pure core: keys, JOSE, access tokens, refresh tokens, passwords, sessions.

Nothing here imports a web framework or a database driver, and every function that
needs the time takes it from an injected :class:`~latchkey.core.clock.Clock`.
"""
