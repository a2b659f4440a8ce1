"""A small "notes" API in Django, protected by a ``require_token`` decorator written here.

One file, no database, settings configured in code. Run it next to a latchkey service
(``latchkey serve`` on port 8000), either with Django's development server::

    LATCHKEY_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \\
        python examples/django_api.py runserver 8001

or as an ASGI app, from the repository root::

    LATCHKEY_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \\
        uvicorn --factory examples.django_api:create_app --port 8001

``GET /notes`` needs any valid access token, ``POST /notes`` one with the ``write`` scope;
``/health`` is public. The claims of a valid token are in ``request.claims``. With
``LATCHKEY_REDIS_URL`` set to the service's Redis, the tokens of a session revoked at the
service are refused at once instead of living out their 15 minutes.

In a Django project of your own, copy ``require_token`` and put the verifier in your settings
(``LATCHKEY_VERIFIER = verifier_from_env()``); ``configure`` and ``create_app`` exist only
because this example is a single file.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from latchkey import AccessClaims, InsufficientScope, LatchkeyError, Verifier
from latchkey.guard.bearer import REFUSALS, bearer_token, refusal_body, refusal_headers
from latchkey.guard.denylist import RedisDenyList

View = Callable[..., Any]


def verifier_from_env() -> Verifier:
    """Keys come from the service's JWKS, fetched once and cached; revoked sessions from
    the service's Redis when there is one."""
    redis_url = os.environ.get("LATCHKEY_REDIS_URL")
    return Verifier.from_jwks_url(
        os.environ["LATCHKEY_JWKS_URL"],
        issuer=os.environ.get("LATCHKEY_ISSUER", "http://127.0.0.1:8000"),
        audience=os.environ.get("LATCHKEY_AUDIENCE", "latchkey"),
        revoked_sessions=RedisDenyList(redis_url) if redis_url else None,
    )


# --- the decorator ---------------------------------------------------------------------------


def refusal(error: LatchkeyError) -> JsonResponse:
    """401 or 403 with an OAuth-style body and an RFC 6750 §3 challenge; 503 with
    ``Retry-After`` when the keys cannot be had now (a server fault: the client keeps its
    session and tries again)."""
    response = JsonResponse(refusal_body(error), status=error.status_code)
    for name, value in refusal_headers(error).items():
        response[name] = value
    return response


def require_token(
    scopes: Iterable[str] = (), verifier: Verifier | None = None
) -> Callable[[View], View]:
    """Require ``Authorization: Bearer <access token>`` carrying every scope in ``scopes``.

    The claims land in ``request.claims``. Without a token, or with one that does not verify:
    401 ``invalid_token``; with a valid token that lacks a scope: 403 ``insufficient_scope``;
    when the keys cannot be fetched now: 503 ``temporarily_unavailable``. The verifier is the
    one given, else ``settings.LATCHKEY_VERIFIER``. Works on sync and async views: an async
    view awaits ``Verifier.verify_async``, which never blocks the event loop.
    """
    required = frozenset(scopes)

    def admit(request: HttpRequest, claims: AccessClaims) -> None:
        if not required <= set(claims.get("scope", "").split()):  # RFC 9068 §2.2.3
            raise InsufficientScope()
        request.claims = claims  # type: ignore[attr-defined]

    def check(request: HttpRequest) -> JsonResponse | None:
        try:
            active = verifier or settings.LATCHKEY_VERIFIER
            admit(request, active.verify(bearer_token(request.headers.get("Authorization"))))
        except REFUSALS as error:
            return refusal(error)
        return None

    async def acheck(request: HttpRequest) -> JsonResponse | None:
        try:
            active = verifier or settings.LATCHKEY_VERIFIER
            token = bearer_token(request.headers.get("Authorization"))
            admit(request, await active.verify_async(token))
        except REFUSALS as error:
            return refusal(error)
        return None

    def finish(response: HttpResponse) -> HttpResponse:
        # The answer depends on the token: a cache (Django's cache middleware included) must
        # never hand one user's response to another, or to a request without a token.
        patch_vary_headers(response, ("Authorization",))
        return response

    def decorator(view: View) -> View:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                denied = await acheck(request)
                if denied is not None:
                    return finish(denied)
                return finish(await view(request, *args, **kwargs))

            wrapper: View = async_wrapper
        else:

            @functools.wraps(view)
            def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                denied = check(request)
                if denied is not None:
                    return finish(denied)
                return finish(view(request, *args, **kwargs))

            wrapper = sync_wrapper
        # A bearer token is never sent by a browser on its own, so a request that carries a
        # valid one cannot be a cross-site forgery: no CSRF token needed (as DRF's APIView).
        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        return wrapper

    return decorator


# --- the API ---------------------------------------------------------------------------------

NOTES: dict[str, list[str]] = {}  # owner (the token's "sub") -> notes


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_token()
def list_notes(request: HttpRequest) -> JsonResponse:
    owner = request.claims["sub"]  # type: ignore[attr-defined]
    return JsonResponse({"owner": owner, "notes": NOTES.get(owner, [])})


@require_token(scopes=["write"])
def add_note(request: HttpRequest) -> JsonResponse:
    owner = request.claims["sub"]  # type: ignore[attr-defined]
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JsonResponse(
            {"error": "invalid_request", "error_description": "The body must be a JSON object."},
            status=400,
        )
    text = str(body.get("text", ""))
    NOTES.setdefault(owner, []).append(text)
    return JsonResponse({"owner": owner, "text": text}, status=201)


@csrf_exempt  # the routed view: each method's own require_token does the authentication
@require_http_methods(["GET", "POST"])
def notes(request: HttpRequest) -> HttpResponse:
    """Django routes by path only: one view per path, a scope per method."""
    return add_note(request) if request.method == "POST" else list_notes(request)


urlpatterns = [path("health", health), path("notes", notes)]


# --- settings and entry points ---------------------------------------------------------------


def configure(verifier: Verifier | None = None, **overrides: Any) -> None:
    """Configure Django for this module, once per process (``settings.configure`` can run only
    once); a later call only replaces the verifier."""
    if not settings.configured:
        hosts = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
        settings.configure(
            DEBUG=os.environ.get("DJANGO_DEBUG") == "1",
            # Nothing is signed with it here (no sessions, no cookies); set one in production.
            SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(32),
            ALLOWED_HOSTS=hosts.split(","),
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[],
            DATABASES={},
            # As in a default project: require_token's csrf_exempt lets bearer POSTs through.
            MIDDLEWARE=[
                "django.middleware.security.SecurityMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
            ],
            LATCHKEY_VERIFIER=verifier or verifier_from_env(),
            **overrides,
        )
    elif (urlconf := settings.ROOT_URLCONF) != __name__:
        raise ImproperlyConfigured(f"Django is set up for {urlconf}, not for {__name__}")
    elif verifier is not None:
        settings.LATCHKEY_VERIFIER = verifier


def create_app(verifier: Verifier | None = None) -> Any:
    """The ASGI application (``uvicorn --factory examples.django_api:create_app``), with an
    empty notebook."""
    # The ASGI server logs the requests: Django leaves the process's logging alone.
    configure(verifier, LOGGING_CONFIG=None)
    settings.LATCHKEY_VERIFIER.warm_up()  # the keys before the first request (False: 503s)
    NOTES.clear()
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def main(argv: list[str]) -> None:
    """``python examples/django_api.py runserver 8001`` (or any other manage.py command)."""
    configure()
    if argv[1:2] == ["runserver"]:
        settings.LATCHKEY_VERIFIER.warm_up()  # the keys before the first request
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)


if __name__ == "__main__":
    main(sys.argv)
