"""Cost of checking (and signing) one latchkey access token, against the raw signature check.

For each algorithm this generates a key, issues ONE realistic access token with
``AccessTokenIssuer`` and then times, on that same token, in one run:

- ``raw``       the bare ``cryptography`` signature check of the JWS signing input;
- ``latchkey``  ``latchkey.Verifier(...).verify(token)`` (header, signature and claims);
- ``PyJWT``     ``jwt.decode(token, key, algorithms=[alg], audience=..., issuer=...)`` with the
                key object parsed beforehand;
- ``joserfc``   ``jwt.decode`` plus claim validation, when joserfc is installed;
- ``sign`` / ``issue``  ``SigningKey.sign`` of the signing input and a whole
                ``AccessTokenIssuer.issue`` call.

The cases run interleaved (one repeat of each in turn) until the time budget is spent, so that
load from other processes hits every case alike. Each repeat runs the call many times; the
figure reported is the MINIMUM per-call time over the repeats (the least disturbed one) and the
median, with their ratio to the raw check.

    .venv/bin/python bench/verify.py [--alg RS256|ES256|EdDSA|all] [--seconds N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
import timeit
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from latchkey import SystemClock, Verifier
from latchkey.core.access import AccessTokenIssuer
from latchkey.core.b64 import b64url_decode
from latchkey.core.keys import ALGORITHMS, PublicKey, SigningKey

ISSUER = "https://auth.example.com"
AUDIENCE = "api"
TTL = 900
SCOPE = "read write"
TARGET_REPEAT_SECONDS = 0.01  # one repeat = this much work, so the timer's overhead vanishes


@dataclass
class Case:
    name: str
    func: Callable[[], object]
    kind: str  # "verify" or "sign"
    number: int = 0
    samples: list[float] = field(default_factory=list)  # seconds per call, one per repeat

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


# --- machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"}
        ).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def source_state() -> str:
    """The git revision of the checkout benchmarked, and whether src/ has local changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"git {head}" + (
        f" + {len(dirty)} changed file(s) in src/" if dirty else " (src/ clean)"
    )


def machine_lines() -> list[str]:
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        openssl = backend.openssl_version_text()
    except Exception:  # pragma: no cover - informative only
        openssl = "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"- date (UTC): {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M:%S')}",
        f"- CPU: {cpu_model()} (platform.processor: {platform.processor() or 'n/a'}), "
        f"{os.cpu_count()} logical cores, {usable} usable",
        f"- load average (1, 5, 15 min) at start: {load}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- cryptography {version('cryptography')} ({openssl}), PyJWT {version('PyJWT')}, "
        f"joserfc {version('joserfc')}, latchkey {version('latchkey')}",
        f"- latchkey source: {source_state()}",
    ]


# --- cases ---------------------------------------------------------------------------------


def raw_check(alg: str, public: object, signature: bytes, data: bytes) -> Callable[[], object]:
    if alg == "RS256":
        assert isinstance(public, rsa.RSAPublicKey)
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda: public.verify(signature, data, pkcs1, sha256)
    if alg == "ES256":
        assert isinstance(public, ec.EllipticCurvePublicKey)
        # JWS carries R || S; cryptography wants DER. The conversion is part of the JWS check
        # (so of latchkey's and PyJWT's cost), not of the raw one: precompute it here.
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda: public.verify(der, data, ecdsa)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    return lambda: public.verify(signature, data)


def pyjwt_check(alg: str, public: PublicKey, token: str) -> Callable[[], object] | None:
    try:
        import jwt
    except ImportError:
        return None
    decode = jwt.decode
    options: Any = {"require": ["exp", "iat", "iss", "aud", "sub", "jti"]}

    def check() -> object:
        return decode(
            token, public, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER, options=options
        )

    return check


def joserfc_check(alg: str, jwk: dict[str, str], token: str) -> Callable[[], object] | None:
    try:
        from joserfc import jwt as jose_jwt  # type: ignore[import-not-found,unused-ignore]
        from joserfc.jwk import (  # type: ignore[import-not-found,unused-ignore]
            ECKey,
            OKPKey,
            RSAKey,
        )
    except ImportError:
        return None
    key_type: Any = {"RS256": RSAKey, "ES256": ECKey, "EdDSA": OKPKey}[alg]
    key = key_type.import_key(jwk)
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        jti={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    algorithms = [alg]
    # joserfc warns once that "EdDSA" is deprecated by RFC 9864 (in favour of "Ed25519");
    # latchkey tokens still say "EdDSA", so that is the algorithm to accept here.
    warnings.filterwarnings("ignore", message="EdDSA is deprecated")

    def check() -> object:
        decoded = jose_jwt.decode(token, key, algorithms=algorithms)
        registry.validate(decoded.claims)
        return decoded.claims

    return check


def build_cases(alg: str) -> tuple[list[Case], list[str]]:
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    issuer = AccessTokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, clock=SystemClock())
    subject, sid = secrets.token_hex(16), secrets.token_hex(16)
    auth_time = int(time.time())
    token = issuer.issue(subject=subject, sid=sid, scope=SCOPE, auth_time=auth_time).token

    signing_input, _, signature_b64 = token.rpartition(".")
    data, signature = signing_input.encode("ascii"), b64url_decode(signature_b64)
    public = key.public.key
    verifier = Verifier([key.public], issuer=ISSUER, audience=AUDIENCE, max_lifetime=TTL)

    notes = [f"{alg}: token of {len(token)} characters, kid {key.kid}"]
    cases = [
        Case("raw cryptography check", raw_check(alg, public, signature, data), "verify"),
        Case("latchkey Verifier.verify", lambda: verifier.verify(token), "verify"),
    ]
    pyjwt = pyjwt_check(alg, public, token)
    if pyjwt is not None:
        cases.append(Case("PyJWT jwt.decode", pyjwt, "verify"))
    else:
        notes.append(f"{alg}: PyJWT not installed, skipped")
    jose = joserfc_check(alg, key.public.to_jwk(), token)
    if jose is not None:
        cases.append(Case("joserfc jwt.decode + claims", jose, "verify"))
    else:
        notes.append(f"{alg}: joserfc not installed, skipped")
    cases.append(Case("SigningKey.sign", lambda: key.sign(data), "sign"))
    cases.append(
        Case(
            "AccessTokenIssuer.issue",
            lambda: issuer.issue(subject=subject, sid=sid, scope=SCOPE, auth_time=auth_time),
            "sign",
        )
    )

    # Every case must succeed on the token before it is timed.
    claims = verifier.verify(token)
    assert claims["sub"] == subject and claims["sid"] == sid and claims["scope"] == SCOPE
    for case in cases:
        result = case.func()
        if case.name.startswith(("PyJWT", "joserfc")):
            assert result["sub"] == subject, case.name  # type: ignore[index]
    return cases, notes


def measure(cases: list[Case], seconds: float) -> None:
    for case in cases:  # calibrate: one repeat takes about TARGET_REPEAT_SECONDS
        number, elapsed = timeit.Timer(case.func).autorange()
        case.number = max(1, int(number * TARGET_REPEAT_SECONDS / elapsed))
    timers = [timeit.Timer(case.func) for case in cases]
    deadline = time.perf_counter() + seconds * len(cases)
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:  # interleaved rounds
        for case, timer in zip(cases, timers, strict=True):
            case.samples.append(timer.timeit(case.number) / case.number)
        rounds += 1


# --- output --------------------------------------------------------------------------------


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def table(results: dict[str, list[Case]]) -> list[str]:
    lines = [
        "| alg | operation | min µs | median µs | min ÷ raw min | median ÷ raw median | "
        "repeats x calls |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for alg, cases in results.items():
        raw = cases[0]
        for case in cases:
            if case.kind == "verify":
                ratio_min = f"{case.best / raw.best:.2f}x"
                ratio_med = f"{case.median / raw.median:.2f}x"
            else:
                ratio_min = ratio_med = "—"
            lines.append(
                f"| {alg} | {case.name} | {us(case.best)} | {us(case.median)} | {ratio_min} "
                f"| {ratio_med} | {len(case.samples)} x {case.number} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alg", choices=[*ALGORITHMS, "all"], default="all")
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="time budget per measured case (default 2; the cases of one algorithm share "
        "their budgets, interleaved)",
    )
    args = parser.parse_args(argv)
    algs = list(ALGORITHMS) if args.alg == "all" else [args.alg]

    print("## Access-token verification and signing cost\n")
    print("\n".join(machine_lines()))
    print(f"- command: {' '.join([os.path.basename(sys.executable), *sys.argv])}\n")

    results: dict[str, list[Case]] = {}
    all_notes: list[str] = []
    for alg in algs:
        cases, notes = build_cases(alg)
        measure(cases, args.seconds)
        results[alg] = cases
        all_notes += notes
        print(f"measured {alg}", file=sys.stderr)

    print("\n".join(table(results)))
    print()
    for note in all_notes:
        print(f"- {note}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"- load average (1, 5, 15 min) at end: {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
