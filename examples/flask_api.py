"""A small "notes" API in Flask, protected by the ``require_token`` decorator.

    LATCHKEY_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \\
        flask --app examples.flask_api:create_app run --port 8001

The claims of a valid token are in ``flask.g.latchkey_claims``. ``create_app`` fetches the
keys before the first request; when the key server cannot be reached, refusals are 503 with
``Retry-After``, never 401.
"""

from __future__ import annotations

import os

from flask import Flask, g, request

from latchkey import Verifier
from latchkey.guard.flask import require_token


def verifier_from_env() -> Verifier:
    return Verifier.from_jwks_url(
        os.environ["LATCHKEY_JWKS_URL"],
        issuer=os.environ.get("LATCHKEY_ISSUER", "http://127.0.0.1:8000"),
        audience=os.environ.get("LATCHKEY_AUDIENCE", "latchkey"),
    )


def create_app(verifier: Verifier | None = None) -> Flask:
    verifier = verifier or verifier_from_env()
    verifier.warm_up()  # the keys now; their refresh then runs in a thread of its own
    notes: dict[str, list[str]] = {}
    app = Flask(__name__)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/notes")
    @require_token(verifier)
    def list_notes() -> dict[str, object]:
        owner = g.latchkey_claims["sub"]
        return {"owner": owner, "notes": notes.get(owner, [])}

    @app.post("/notes")
    @require_token(verifier, scopes=["write"])
    def add_note() -> tuple[dict[str, str], int]:
        owner = g.latchkey_claims["sub"]
        text = str((request.get_json(silent=True) or {}).get("text", ""))
        notes.setdefault(owner, []).append(text)
        return {"owner": owner, "text": text}, 201

    return app
