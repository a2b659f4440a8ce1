"""The reference peer: Flask + flask-jwt-extended + Flask-SQLAlchemy, as their docs show.

- "Automatic user loading": ``user_lookup_loader`` loads the user row for every protected
  request, and ``/me`` returns it (``current_user``).
- "JWT revoking / blocklist", database variant: ``token_in_blocklist_loader`` looks the token's
  ``jti`` up in a ``TokenBlocklist`` table on every protected request; ``/refresh`` rotates:
  the presented refresh token's ``jti`` goes into the table (``UNIQUE``, so a token replayed
  concurrently fails on the constraint) and a new access and refresh token are returned.
- SQLite through Flask-SQLAlchemy with its defaults, under gunicorn's sync workers (the
  deployment its docs show). RS256 with a 2048-bit key, as latchkey signs by default
  (``JWT_ALGORITHM``, ``JWT_PRIVATE_KEY``, ``JWT_PUBLIC_KEY``).

    BENCH_KEY_FILE=key.pem BENCH_DB=/tmp/peer.db gunicorn -w 2 flask_jwt:app
    BENCH_KEY_FILE=key.pem BENCH_DB=/tmp/peer.db python flask_jwt.py < users.json  # schema
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    current_user,
    get_jwt,
    jwt_required,
)
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash, generate_password_hash

_pem = Path(os.environ["BENCH_KEY_FILE"]).read_bytes()
_public = (
    serialization.load_pem_private_key(_pem, None)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{os.environ['BENCH_DB']}"
app.config["JWT_ALGORITHM"] = "RS256"
app.config["JWT_PRIVATE_KEY"] = _pem
app.config["JWT_PUBLIC_KEY"] = _public
jwt = JWTManager(app)
db = SQLAlchemy(app)


class User(db.Model):  # type: ignore[name-defined,misc]
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.Text, nullable=False, unique=True)
    password_hash = db.Column(db.Text, nullable=False)


class TokenBlocklist(db.Model):  # type: ignore[name-defined,misc]
    id = db.Column(db.Integer, primary_key=True)
    jti = db.Column(db.String(36), nullable=False, unique=True)
    created_at = db.Column(db.DateTime, nullable=False)


@jwt.user_identity_loader
def user_identity_lookup(user: User) -> str:
    return str(user.id)


@jwt.user_lookup_loader
def user_lookup_callback(_jwt_header: dict[str, Any], jwt_data: dict[str, Any]) -> User | None:
    return User.query.filter_by(id=int(jwt_data["sub"])).one_or_none()  # type: ignore[no-any-return]


@jwt.token_in_blocklist_loader
def check_if_token_revoked(_jwt_header: dict[str, Any], jwt_payload: dict[str, Any]) -> bool:
    token = db.session.query(TokenBlocklist.id).filter_by(jti=jwt_payload["jti"]).scalar()
    return token is not None


@app.route("/login", methods=["POST"])
def login() -> ResponseReturnValue:
    username = request.json.get("username", None)  # type: ignore[union-attr]
    password = request.json.get("password", None)  # type: ignore[union-attr]
    user = User.query.filter_by(username=username).one_or_none()
    if not user or not check_password_hash(user.password_hash, password):
        return jsonify("Wrong username or password"), 401
    return jsonify(
        access_token=create_access_token(identity=user),
        refresh_token=create_refresh_token(identity=user),
    )


@app.route("/me")
@jwt_required()
def me() -> ResponseReturnValue:
    return jsonify(id=current_user.id, username=current_user.username)


@app.route("/refresh", methods=["POST"])
@jwt_required(refresh=True)
def refresh() -> ResponseReturnValue:
    db.session.add(TokenBlocklist(jti=get_jwt()["jti"], created_at=datetime.now(UTC)))
    db.session.commit()
    return jsonify(
        access_token=create_access_token(identity=current_user),
        refresh_token=create_refresh_token(identity=current_user),
    )


if __name__ == "__main__":  # create the schema and the users given as {"name": "password"}
    with app.app_context():
        db.create_all()
        for name, password in json.load(sys.stdin).items():
            db.session.add(User(username=name, password_hash=generate_password_hash(password)))
        db.session.commit()
