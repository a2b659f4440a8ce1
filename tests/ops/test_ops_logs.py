"""Structured logs: JSON lines, request ids, uvicorn routed through, tokens redacted."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from latchkey.ops.logs import LogFormat, configure_logging, current_request_id, log_format_for
from latchkey.settings import Settings
from latchkey.web.middleware import RequestIdMiddleware

log = logging.getLogger("latchkey.test")

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
REFRESH = "lkrt.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """configure_logging("info", "json") writing to a buffer; global logging restored after."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_uvicorn = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    yield stream
    root.handlers[:], root.level = saved_root
    for name, (handlers, propagate) in saved_uvicorn.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every JSON line written, except the test client's own (httpx logs each request)."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in parsed if line["logger"] != "httpx"]


async def hello(_request: Request) -> Response:
    log.info("hello %s", "world", extra={"sid": "s-1", "user_id": "u-1"})
    return PlainTextResponse("hi")


def tiny_app() -> Starlette:
    return Starlette(routes=[Route("/hello", hello)], middleware=[Middleware(RequestIdMiddleware)])


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=tiny_app())
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_log_lines_are_json_with_the_responses_request_id(logs: io.StringIO) -> None:
    """A line logged in a handler is JSON carrying the id the response returns, and extras."""
    async with client() as c:
        response = await c.get("/hello")

    request_id = response.headers["x-request-id"]
    assert GENERATED.fullmatch(request_id)
    (line,) = lines(logs)
    assert line["msg"] == "hello world"
    assert line["request_id"] == request_id
    assert line["level"] == "info"
    assert line["logger"] == "latchkey.test"
    assert line["sid"] == "s-1"
    assert line["user_id"] == "u-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])


def test_lines_outside_a_request_have_no_request_id(logs: io.StringIO) -> None:
    """Outside a request there is no request_id key at all."""
    log.warning("starting")
    (line,) = lines(logs)
    assert "request_id" not in line
    assert current_request_id() is None


async def test_a_sane_incoming_request_id_is_kept(logs: io.StringIO) -> None:
    """A client's X-Request-ID of up to 64 safe characters is reused as is."""
    async with client() as c:
        response = await c.get("/hello", headers={"X-Request-ID": "edge-7f3a.01_x"})

    assert response.headers["x-request-id"] == "edge-7f3a.01_x"
    assert lines(logs)[0]["request_id"] == "edge-7f3a.01_x"


@pytest.mark.parametrize("incoming", ["x" * 200, "x" * 65, "has spaces", "a;b=c", ""])
async def test_an_insane_incoming_request_id_is_replaced(logs: io.StringIO, incoming: str) -> None:
    """Too long, empty or unsafe X-Request-ID values are replaced by a fresh uuid4 hex."""
    async with client() as c:
        response = await c.get("/hello", headers={"X-Request-ID": incoming})

    assert GENERATED.fullmatch(response.headers["x-request-id"])
    assert lines(logs)[0]["request_id"] == response.headers["x-request-id"]


async def test_a_request_id_with_a_newline_cannot_inject_a_log_line(logs: io.StringIO) -> None:
    """A raw header with a newline (which httpx would refuse to send) is replaced too."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"x-request-id", b'ok\n{"level": "critical"}')],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await tiny_app()(scope, receive, send)

    headers = dict(sent[0]["headers"])
    assert GENERATED.fullmatch(headers[b"x-request-id"].decode())
    assert len(lines(logs)) == 1


def test_tokens_are_redacted_from_messages_and_extras(logs: io.StringIO) -> None:
    """JWT-looking and lkrt. strings never reach the output, in the message or an extra."""
    log.info("presented %s then Bearer %s", REFRESH, JWT, extra={"token": REFRESH, "n": 3})

    text = logs.getvalue()
    assert JWT not in text
    assert REFRESH not in text
    (line,) = lines(logs)
    assert line["msg"] == "presented [redacted] then Bearer [redacted]"
    assert line["token"] == "[redacted]"
    assert line["n"] == 3


def test_exceptions_are_one_field_with_type_and_message(logs: io.StringIO) -> None:
    """A logged exception becomes "exc": "Type: message" (redacted), with no traceback."""
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        log.exception("refresh failed")

    (line,) = lines(logs)
    assert line["exc"] == "ValueError: bad token [redacted]"
    assert "Traceback" not in logs.getvalue()


def test_uvicorn_loggers_go_through_the_same_formatter() -> None:
    """uvicorn's own handlers are dropped, so its error and access lines come out as JSON."""
    access = logging.getLogger("uvicorn.access")
    own = logging.StreamHandler(io.StringIO())
    access.addHandler(own)
    access.propagate = False
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream=stream, access_log=True)
        assert own not in access.handlers
        access.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", f"/x?t={REFRESH}", "1.1", 200)
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    finally:
        root.handlers[:], root.level = saved
        access.removeHandler(own)
        access.propagate = True

    first, second = lines(stream)
    assert first["logger"] == "uvicorn.access"
    assert first["msg"] == '1.2.3.4:5 - "GET /x?t=[redacted] HTTP/1.1" 200'
    assert second == {**second, "logger": "uvicorn.error", "msg": "Started server process [42]"}


def test_the_access_log_is_off_unless_asked_for() -> None:
    """LATCHKEY_ACCESS_LOG is off by default: uvicorn's access lines are dropped at the level
    check, while its other lines and latchkey's own info lines still come out."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream=stream)
        logging.getLogger("uvicorn.access").info('%s - "%s %s"', "1.2.3.4:5", "GET", "/auth/me")
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        log.info("latchkey line")
    finally:
        root.handlers[:], root.level = saved
        logging.getLogger("uvicorn.access").setLevel(logging.NOTSET)

    assert [line["logger"] for line in lines(stream)] == ["uvicorn.error", log.name]


def test_text_format_is_one_readable_line_and_redacted() -> None:
    """The "text" format prints level, logger, message and extras on one line, redacted."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    try:
        configure_logging("warning", "text", stream=stream)
        log.info("not shown")
        log.warning("reuse of %s", REFRESH, extra={"sid": "s-9"})
    finally:
        root.handlers[:], root.level = saved

    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING latchkey.test: reuse of [redacted] sid=s-9")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("fmt", "stream", "chosen"),
    [
        ("auto", Terminal(), "text"),
        ("auto", io.StringIO(), "json"),
        ("json", Terminal(), "json"),
        ("text", io.StringIO(), "text"),
    ],
    ids=["auto-terminal", "auto-not-a-terminal", "json-on-a-terminal", "text-into-a-file"],
)
def test_the_format_follows_the_stream_unless_one_is_set(
    fmt: LogFormat, stream: io.StringIO, chosen: str
) -> None:
    """``auto`` (the default) writes readable lines on a terminal and JSON lines elsewhere;
    ``json`` and ``text`` hold whatever the stream is."""
    assert Settings(_env_file=None).log_format == "auto"  # type: ignore[call-arg]
    assert log_format_for(fmt, stream) == chosen
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("info", fmt, stream=stream)
        log.info("hello")
    finally:
        root.handlers[:], root.level = saved
    (line,) = stream.getvalue().splitlines()
    if chosen == "json":
        assert json.loads(line)["msg"] == "hello"
    else:
        assert line.endswith("INFO latchkey.test: hello")


def test_a_closed_stream_gets_json() -> None:
    stream = io.StringIO()
    stream.close()
    assert log_format_for("auto", stream) == "json"
