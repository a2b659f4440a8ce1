"""The OpenAPI 3.1 document, generated from the routes' declarations (web/contract.py) and the
pydantic models they name, and a self-contained page that shows it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.routing import BaseRoute, Route

from .bodies import ErrorResponse
from .contract import Answer, Header, Operation, declared
from .cookies import COOKIE_NAME
from .csrf import CSRF_HEADER, under_cookie_path

__all__ = ["docs_html", "openapi_spec"]

_COMPONENT = "#/components/schemas/{model}"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "client_basic": {"type": "http", "scheme": "basic"},
    "refresh_cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
}

# Cookie mode and its CSRF rule (docs/browser.md, web/cookies.py, web/csrf.py).
CSRF = Header(
    CSRF_HEADER,
    "Required (with an Origin that is this service's, the issuer's or one of "
    "LATCHKEY_CORS_ORIGINS; or, without Origin, Sec-Fetch-Site: same-origin) whenever the "
    "request carries the refresh cookie, and for a login in cookie mode; then its value must "
    "be 1. Without the cookie it is not read.",
    {"type": "string", "examples": ["1"]},
)
CROSS_SITE = (
    "access_denied: the request carries the refresh cookie (or asks for it) without "
    f"{CSRF_HEADER}: 1 from an allowed origin; nothing was changed"
)
RETRY_AFTER = Header("Retry-After", "Seconds to wait before trying again", {"type": "string"})
_BEARER_CHALLENGE = Header(
    "WWW-Authenticate", 'Bearer realm="latchkey", with error="invalid_token" when one was sent'
)

# What every route of a kind may answer (web/contract.py): added unless declared.
_MALFORMED = Answer("invalid_request: the body is not what this operation takes", ErrorResponse)
_TOO_LARGE = Answer("Body too large (past LATCHKEY_MAX_BODY_BYTES)", ErrorResponse)
_INVALID_TOKEN = Answer(
    "invalid_token: missing, invalid, expired or revoked bearer token",
    ErrorResponse,
    headers=(_BEARER_CHALLENGE,),
)
_UNAVAILABLE = Answer(
    "temporarily_unavailable: the database (or Redis) does not answer; try again",
    ErrorResponse,
    headers=(RETRY_AFTER,),
)


def openapi_spec(routes: Iterable[BaseRoute], server_url: str) -> dict[str, Any]:
    """The document of every route in ``routes``; each must be declared (web/contract.py)."""
    models = _Models()
    paths: dict[str, dict[str, Any]] = {}
    for item in routes:
        if not isinstance(item, Route):
            raise LookupError(f"{item!r} is not a declared route")
        declaration = declared(item.endpoint)
        template = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", item.path)
        operations = paths.setdefault(template, {})
        operations[declaration.method.lower()] = _operation(item, declaration, models)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "latchkey",
            "version": "0.1.0",
            "description": "Token authentication for Web APIs.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": models.components(), "securitySchemes": SECURITY_SCHEMES},
    }


class _Models:
    """The models the document names: a ``$ref`` now, their schemas in components at the end
    (one pass of pydantic, so that models nested in others become components too)."""

    def __init__(self) -> None:
        self._modes: dict[type[BaseModel], JsonSchemaMode] = {}

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        self._modes.setdefault(model, mode)
        return {"$ref": _COMPONENT.format(model=model.__name__)}

    def components(self) -> dict[str, Any]:
        pairs = list(self._modes.items())
        refs, top = models_json_schema(pairs, ref_template=_COMPONENT)
        schemas: dict[str, Any] = dict(top.get("$defs", {}))
        for (model, _mode), ref in refs.items():
            name = ref["$ref"].rsplit("/", 1)[1]
            if name != model.__name__:  # the same model in both modes: one name for each
                raise TypeError(f"{model.__name__} is used both as a request and an answer")
        return dict(sorted(schemas.items()))


def _operation(item: Route, declaration: Operation, models: _Models) -> dict[str, Any]:
    answers = dict(declaration.answers)
    headers = list(declaration.headers)
    uses_bearer = any("bearer" in option for option in declaration.security or ())
    if declaration.body is not None:
        answers.setdefault(400, _MALFORMED)
        answers.setdefault(413, _TOO_LARGE)
    if uses_bearer:
        answers.setdefault(401, _INVALID_TOKEN)
    if declaration.method not in _SAFE_METHODS and under_cookie_path(item.path):
        # CsrfMiddleware: every state-changing request under the cookie's path that carries it.
        if CSRF not in headers:
            headers.append(CSRF)
        answers[403] = _merge(answers.get(403), CROSS_SITE)
    if declaration.reaches_store:
        answers.setdefault(503, _UNAVAILABLE)

    result: dict[str, Any] = {"summary": declaration.summary}
    if declaration.description:
        result["description"] = declaration.description
    if declaration.security is not None:
        result["security"] = [
            {scheme: list(scopes) for scheme, scopes in option.items()}
            for option in declaration.security
        ]
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(declaration.path_parameters.get(name, {"type": "string"})),
        }
        for name in item.param_convertors
    ] + [
        {
            "name": header.name,
            "in": "header",
            "required": header.required,
            "description": header.description,
            "schema": dict(header.schema),
        }
        for header in headers
    ]
    if parameters:
        result["parameters"] = parameters
    if declaration.body is not None:
        result["requestBody"] = {
            "required": declaration.body_required,
            "content": {
                declaration.body_media_type: {"schema": models.ref(declaration.body, "validation")}
            },
        }
    result["responses"] = {
        str(status): _answer(answer, models) for status, answer in sorted(answers.items())
    }
    return result


def _merge(answer: Answer | None, description: str) -> Answer:
    if answer is None:
        return Answer(description, ErrorResponse)
    return Answer(
        f"{answer.description}; {description}",
        answer.model,
        answer.media_type,
        answer.schema,
        answer.headers,
        answer.alternatives,
    )


def _answer(answer: Answer, models: _Models) -> dict[str, Any]:
    result: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        result["headers"] = {
            header.name: {"description": header.description, "schema": dict(header.schema)}
            for header in answer.headers
        }
    schema: Mapping[str, Any] | None = answer.schema
    if answer.model is not None:
        schema = models.ref(answer.model, "serialization")
    elif answer.alternatives:
        schema = {"oneOf": [models.ref(model, "serialization") for model in answer.alternatives]}
    if schema is not None:
        result["content"] = {answer.media_type or "application/json": {"schema": dict(schema)}}
    elif answer.media_type is not None:
        result["content"] = {answer.media_type: {}}
    return result


def docs_html(spec: dict[str, Any]) -> str:
    """A plain page listing every operation with its schemas (no scripts, no CDN)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8><title>latchkey API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;"
        "overflow:auto}h2{margin-top:2rem;font-size:1.1rem}.m{font-weight:700;"
        "text-transform:uppercase;margin-right:.5rem}</style>",
        f"<h1>{e(spec['info']['title'])} API</h1><p>{e(spec['info']['description'])} "
        "Machine-readable: <a href=/openapi.json>/openapi.json</a>.</p>",
    ]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            parts.append(f"<h2><span class=m>{e(method)}</span><code>{e(path)}</code></h2>")
            parts.append(f"<p>{e(op['summary'])}</p>")
            if "description" in op:
                parts.append(f"<p>{e(op['description'])}</p>")
            if "requestBody" in op:
                media_type, content = next(iter(op["requestBody"]["content"].items()))
                parts.append(
                    f"<p>Request body (<code>{e(media_type)}</code>):</p><pre>"
                    + e(json.dumps(_resolve(spec, content["schema"]), indent=2))
                    + "</pre>"
                )
            parts.append(
                "<ul>"
                + "".join(
                    f"<li><b>{e(code)}</b> {e(resp['description'])}</li>"
                    for code, resp in op["responses"].items()
                )
                + "</ul>"
            )
    return "".join(parts)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return resolved
