"""Runs a Markdown page of the documentation top to bottom against a real ``latchkey serve``.

The page is parsed with Sybil. Each page gets its own directory (the working directory of
its commands, where the default ``./latchkey-data`` lands), its own service on a free port
and cheap Argon2 parameters. The fixed ports the pages name (8000 for the service, 8001 for
an example API, 9000 for the management listener) are replaced by the free ones before a block runs.

- ``sh`` blocks run in bash (``set -eo pipefail``) with ``.venv/bin`` of this checkout on
  ``PATH``; shell variables carry over from one block of the page to the next. Each block is
  its own process group: what it leaves running in the background ends with the page.
- ``python`` blocks (visible, or ``<!-- invisible-code-block: python -->``) run in one
  namespace per page; it holds ``shell``, the page's shell variables.
- A block that directly follows an ``sh`` block and whose fence says ``json``, ``text`` or
  nothing is that block's expected output: each of its lines must match a line of the
  output, in order (see :func:`line_pattern` for what stands for a varying value).
- ``<!-- skip: next "reason" -->`` (Sybil's directive) marks a block that cannot run here;
  it is still parsed: ``bash -n``, ``compile``, ``json.loads`` or ``configparser``.
- ``<!-- latchkey-serve: NAME=VALUE … -->`` restarts the page's service with these settings
  (same data), for a page whose next blocks need them (registration open, say).
- ``console`` blocks are transcripts: their ``$`` lines run as one shell block (a failing
  command does not stop it), and the other lines are its expected output.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import SkipTest

import httpx
from sybil import Document, Example, Region, Sybil
from sybil.parsers.abstract import AbstractCodeBlockParser
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer
from sybil.typing import Evaluator

from latchkey import Verifier

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 30.0
BLOCK_TIMEOUT = 90.0
CHEAP_ARGON2 = {
    "LATCHKEY_ARGON2_TIME_COST": "1",
    "LATCHKEY_ARGON2_MEMORY_KIB": "8",
    "LATCHKEY_ARGON2_PARALLELISM": "1",
}
SERVICE_PORT, EXAMPLE_PORT, MANAGEMENT_PORT = 8000, 8001, 9000
OUTPUT_FENCES = {"json", "text", ""}

# Saves the variables a block set (names bash did not have at the start) for the next block,
# and the exported ones for the Python blocks; runs when the block's shell exits.
SHELL_PRELUDE = r"""
__docs_save() {
  local __docs_status=$? __docs_name
  for __docs_name in $(compgen -v); do
    case " $DOCS_BASELINE " in *" $__docs_name "*) continue ;; esac
    declare -p "$__docs_name"
  done > "$DOCS_STATE" 2>/dev/null
  for __docs_name in $(compgen -v); do
    case " $DOCS_BASELINE " in *" $__docs_name "*) continue ;; esac
    printf '%s\0%s\0' "$__docs_name" "${!__docs_name}"
  done > "$DOCS_VARIABLES"
  compgen -e > "$DOCS_EXPORTS"
  exit $__docs_status
}
[ -f "$DOCS_STATE" ] && source "$DOCS_STATE"
trap __docs_save EXIT
set -eo pipefail
"""

# A varying value in an expected output: an ellipsis stands for anything, a hex id, a
# timestamp or a Unix time for any of the same shape.
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
WILDCARDS = [
    (re.compile("…"), ".*?"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "[0-9a-f]{32}"),
    (re.compile(r"\b" + TIMESTAMP), TIMESTAMP),
    (re.compile(r"\b1\d{9}\b"), r"\d{10}"),
    (re.compile(r"(?<![\w-])[\w-]{43}(?![\w-])"), r"[\w-]{43}"),  # a key id (RFC 7638)
]


def line_pattern(expected: str) -> re.Pattern[str]:
    """The regular expression one expected output line stands for."""
    parts: list[str] = []
    position = 0
    while position < len(expected):
        for pattern, replacement in WILDCARDS:
            match = pattern.match(expected, position)
            if match:
                parts.append(replacement)
                position = match.end()
                break
        else:
            parts.append(re.escape(expected[position]))
            position += 1
    return re.compile("".join(parts))


def assert_output_matches(expected: str, actual: str, where: str) -> None:
    """Every non-empty expected line matches (whole, trailing spaces aside) an actual line,
    in order."""
    lines = [line.rstrip() for line in actual.splitlines()]
    index = 0
    for wanted in filter(None, (line.rstrip() for line in expected.splitlines())):
        pattern = line_pattern(wanted)
        while index < len(lines) and not pattern.fullmatch(lines[index]):
            index += 1
        if index == len(lines):
            raise AssertionError(
                f"{where}: the output has no line {wanted!r} (in order)\n--- output ---\n{actual}"
            )
        index += 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_only(language: str, source: str, where: str) -> None:
    """Check that a block that is not run is at least well-formed."""
    if language in ("sh", "bash", "console"):
        if language == "console":
            source = "\n".join(line[2:] for line in source.splitlines() if line.startswith("$ "))
        result = subprocess.run(
            ["bash", "-n"], input=source, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{where}: bash -n: {result.stderr}"
    elif language == "python":
        compile(source, where, "exec")
    elif language == "json":
        json.loads(source)
    elif language == "ini":
        configparser.ConfigParser(strict=False, interpolation=None).read_string(
            source if source.lstrip().startswith("[") else "[DEFAULT]\n" + source
        )


@dataclass
class Page:
    """The state of one page while it runs: its directory, service, shell and namespace."""

    path: Path
    workdir: Path
    ports: dict[int, int] = field(default_factory=dict)
    server: subprocess.Popen[bytes] | None = None
    groups: list[int] = field(default_factory=list)
    last_shell: tuple[int, str] | None = None  # (end offset of the block, its output)
    baseline: str = ""
    settings: dict[str, str] = field(default_factory=dict)  # the service's own settings

    def __post_init__(self) -> None:
        self.ports = {port: free_port() for port in (SERVICE_PORT, EXAMPLE_PORT, MANAGEMENT_PORT)}
        for name in (".venv", "examples", "bench"):
            (self.workdir / name).symlink_to(VENV_BIN.parent if name == ".venv" else ROOT / name)

    # --- environment -------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.ports[SERVICE_PORT]}"

    def env(self) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("LATCHKEY_") and not name.lower().endswith("_proxy")
        }
        env.update(CHEAP_ARGON2, LATCHKEY_ISSUER=self.issuer)
        env["LATCHKEY_MANAGEMENT_ADDR"] = f"127.0.0.1:{self.ports[MANAGEMENT_PORT]}"
        env.update(self.settings)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def localise(self, text: str) -> str:
        """The text with the documented ports replaced by this page's."""
        return re.sub(r"\b(8000|8001|9000)\b", lambda m: str(self.ports[int(m[1])]), text)

    # --- the service -------------------------------------------------------------------

    def ensure_server(self) -> None:
        if self.server is not None:
            return
        port = self.ports[SERVICE_PORT]
        with (
            (self.workdir / "latchkey.stdout").open("wb") as out,
            (self.workdir / "latchkey.stderr").open("wb") as err,
        ):
            self.server = subprocess.Popen(
                [str(VENV_BIN / "latchkey"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.workdir,
                env=self.env(),
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(base_url=self.issuer, trust_env=False) as client:
            while True:
                if self.server.poll() is not None:
                    raise AssertionError(f"latchkey serve exited:\n{self.server_output()}")
                try:
                    if client.get("/healthz", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"latchkey serve did not start:\n{self.server_output()}")
                time.sleep(0.05)

    def restart_server(self, example: Example) -> None:
        """``<!-- latchkey-serve: NAME=VALUE … -->``: serve on with these settings."""
        self.stop_server()
        self.settings = dict(item.split("=", 1) for item in shlex.split(str(example.parsed)))
        self.ensure_server()

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=10)
        self.server = None

    def server_output(self) -> str:
        return (self.workdir / "latchkey.stderr").read_text(errors="replace")[-4000:]

    def close(self) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        self.stop_server()

    # --- blocks ------------------------------------------------------------------------

    def where(self, example: Example) -> str:
        return f"{self.path.relative_to(ROOT)}:{example.line}"

    def run_shell(self, example: Example, script: str | None = None) -> None:
        self.ensure_server()
        env = self.env()
        if not self.baseline:
            self.baseline = subprocess.run(
                ["bash", "-c", "compgen -v"], env=env, capture_output=True, text=True, check=True
            ).stdout.replace("\n", " ")
        env.update(
            DOCS_BASELINE=self.baseline + " DOCS_BASELINE DOCS_STATE DOCS_VARIABLES DOCS_EXPORTS",
            DOCS_STATE=str(self.workdir / ".docs-state"),
            DOCS_VARIABLES=str(self.workdir / ".docs-variables"),
            DOCS_EXPORTS=str(self.workdir / ".docs-exports"),
        )
        process = subprocess.Popen(
            ["bash", "-c", SHELL_PRELUDE + self.localise(script or str(example.parsed))],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.groups.append(process.pid)
        try:
            output, _ = process.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(
                f"{self.where(example)}: still running after {BLOCK_TIMEOUT} s"
            ) from exc
        text = output.decode(errors="replace")
        if process.returncode != 0:
            raise AssertionError(
                f"{self.where(example)}: exit status {process.returncode}\n{text}\n"
                f"--- latchkey serve ---\n{self.server_output()}"
            )
        self.last_shell = (example.end, text)

    def shell_variables(self) -> tuple[dict[str, str], set[str]]:
        """The variables the page's shell blocks set so far, and the names of those exported."""
        variables = self.workdir / ".docs-variables"
        if not variables.exists():
            return {}, set()
        items = variables.read_bytes().decode().split("\0")
        exported = set((self.workdir / ".docs-exports").read_text().split())
        return dict(zip(items[0:-1:2], items[1::2], strict=True)), exported

    def run_python(self, example: Example) -> None:
        self.ensure_server()
        namespace = example.namespace
        namespace.setdefault("__name__", "__main__")  # as when pasted into a script
        namespace["shell"], exported = self.shell_variables()
        os.environ.update({k: v for k, v in namespace["shell"].items() if k in exported})
        code = compile(self.localise(str(example.parsed)), self.where(example), "exec")
        exec(code, namespace)  # the documentation's own examples

    def check_output(self, example: Example) -> None:
        expected = self.localise(str(example.parsed))
        previous = self.last_shell
        if previous is not None and not example.document.text[previous[0] : example.start].strip():
            assert_output_matches(expected, previous[1], self.where(example))
        elif example.region.lexemes.get("arguments") == "json":
            json.loads(expected)

    def evaluate(self, example: Example) -> None:
        language = str(example.region.lexemes.get("arguments", ""))
        if language in ("sh", "bash"):
            self.run_shell(example)
        elif language == "python":
            self.run_python(example)
        elif language == "console":
            transcript = str(example.parsed).splitlines()
            commands = [line[2:] for line in transcript if line.startswith("$ ")]
            # A transcript shows what its commands print, an error included: their exit
            # status is not checked, their output is.
            self.run_shell(example, "\n".join(["set +e", *commands, "true"]))
            expected = "\n".join(ln for ln in transcript if not ln.startswith("$ "))
            assert_output_matches(self.localise(expected), self.last_shell[1], self.where(example))
        elif language in OUTPUT_FENCES:
            self.check_output(example)
        else:
            parse_only(language, str(example.parsed), self.where(example))


class EveryCodeBlockParser(AbstractCodeBlockParser):
    """Sybil's Markdown code-block parser for every fence, whatever its info string (none
    too), and for ``<!-- invisible-code-block: LANGUAGE -->``."""

    language = "any"

    def __init__(self, evaluator: Evaluator) -> None:
        super().__init__(
            [
                FencedCodeBlockLexer(
                    language=r"[^\n]*", mapping={"language": "arguments", "source": "source"}
                ),
                DirectiveInHTMLCommentLexer(directive=r"invisible-code-block", arguments=".+"),
            ],
            evaluator=evaluator,
        )

    def __call__(self, document: Document) -> Iterator[Region]:
        for region in self.lexers(document):
            region.lexemes["arguments"] = region.lexemes["arguments"].strip()
            region.parsed = region.lexemes["source"]
            region.evaluator = self._evaluator
            yield region


class ServeDirectiveParser:
    """``<!-- latchkey-serve: NAME=VALUE … -->``: the settings the page's service runs with
    from here on."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.lexer = DirectiveInHTMLCommentLexer(directive="latchkey-serve", arguments=".*?")
        self.evaluator = evaluator

    def __call__(self, document: Document) -> Iterator[Region]:
        for lexed in self.lexer(document):
            yield Region(lexed.start, lexed.end, lexed.lexemes["arguments"], self.evaluator)


def parse(path: Path, page: Page) -> Document:
    """The page's examples in order: every fenced block and each directive."""
    parsers = [
        EveryCodeBlockParser(page.evaluate),
        SkipParser(),
        ServeDirectiveParser(page.restart_server),
    ]
    return Sybil(parsers=parsers).parse(path)


def run_page(path: Path, workdir: Path) -> None:
    """Evaluate every example of the page in order; a skipped block is parsed instead."""
    page = Page(path, workdir)
    document = parse(path, page)
    previous_cwd = Path.cwd()
    saved_environ = dict(os.environ)
    os.chdir(workdir)
    try:
        for example in document.examples():
            try:
                example.evaluate()
            except SkipTest as skipped:
                language = str(example.region.lexemes.get("arguments", ""))
                assert str(skipped).strip(), f"{page.where(example)}: skipped without a reason"
                parse_only(language, str(example.parsed), page.where(example))
    finally:
        page.close()  # first: the processes end whatever else fails
        os.chdir(previous_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        for value in document.namespace.values():
            if issubclass(type(value), Verifier):  # type(): lazy objects stay lazy
                value.close()  # its key-refresh thread ends with the page


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def added_users(path: Path) -> set[str]:
    """The user names a page creates (``latchkey user add NAME``, ``/auth/register``)."""
    text = path.read_text()
    names = set(re.findall(r"latchkey user add ([\w.-]+)", text))
    for body in re.findall(r"/auth/register[^\n]*\n[^\n]*?-d '(\{[^']*\})'", text):
        names.add(json.loads(body)["username"])
    return names
