"""The management listener of ``latchkey serve`` (LATCHKEY_MANAGEMENT_ADDR): /metrics and
/readyz there, 404 for /metrics on the public port, /healthz public; a port that cannot be
had is logged and the service runs on."""

from __future__ import annotations

import socket

import httpx
import pytest

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_only_on_the_management_listener(processes) -> None:
    management = f"127.0.0.1:{free_port()}"
    server = processes.start_latchkey(
        processes.workdir / "data", LATCHKEY_MANAGEMENT_ADDR=management
    )
    with server.client() as public:
        assert public.get("/metrics").status_code == 404
        assert public.get("/healthz").status_code == 200
        assert public.get("/readyz").status_code == 200  # load balancers probe it here
    with httpx.Client(base_url=f"http://{management}", trust_env=False, timeout=10) as client:
        metrics = client.get("/metrics")  # up before the public port (app start-up)
        assert metrics.status_code == 200
        assert "# TYPE latchkey_logins_total counter" in metrics.text
        assert 'route="/healthz",status="200"' in metrics.text  # the public port's requests
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert client.get("/auth/me").status_code == 404  # nothing else there
        assert client.get("/healthz").status_code == 404


def test_a_taken_management_port_is_logged_and_the_service_runs(processes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))  # without SO_REUSEPORT: nobody else may bind it
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        server = processes.start_latchkey(
            processes.workdir / "data", LATCHKEY_MANAGEMENT_ADDR=address
        )
        with server.client() as public:
            assert public.get("/healthz").status_code == 200
        server.stop()
    output = server.output()
    assert "management listener not started" in output and address in output, output


def test_a_bad_management_address_stops_serve_with_one_line(processes) -> None:
    result = processes.cli(
        processes.workdir / "data", "serve", "--port", "0", LATCHKEY_MANAGEMENT_ADDR="9000"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("latchkey: LATCHKEY_MANAGEMENT_ADDR: expected HOST:PORT")
