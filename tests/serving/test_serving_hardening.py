"""The model server under an attacker's requests: each test is one failure an attacker-style review found.

Real servers (``python -m ml_cloud_optimizer.serving``, as the ServingRuntime runs it) on real
loopback ports, spoken to with httpx, gRPC and raw sockets where a well-behaved client would
not do what the attack does (half a body, no headers at all).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pandas as pd
import psutil
import pytest
from kserve.model_repository import ModelRepository
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.serving.local import LocalServer, free_port
from ml_cloud_optimizer.serving.model import ForecastModel
from ml_cloud_optimizer.serving.runtime import ServingDataPlane
from serving_support import MODEL_NAME, history_sample, v1_history

V1 = f"/v1/models/{MODEL_NAME}:predict"
V2 = f"/v2/models/{MODEL_NAME}/infer"


@pytest.fixture(scope="module")
def server(champion_dir, tmp_path_factory):
    """Default pool and budget; a 4 MiB body limit."""
    log = tmp_path_factory.mktemp("hardening") / "server.log"
    with LocalServer(champion_dir, MODEL_NAME, args=("--max_body_mb", "4"), log_path=log) as running:
        yield running


def large_v1_body(entities: int) -> bytes:
    """A v1 history request for ``entities`` entities (48 samples each): seconds of forecasting."""
    base = history_sample(entities=5, steps=48)
    copies = [base.assign(entity_id=base["entity_id"] + f"-{k}") for k in range(entities // 5)]
    return json.dumps(v1_history(pd.concat(copies, ignore_index=True))).encode()


def raw_exchange(port: int, data: bytes, wait_s: float) -> tuple[bytes, float, bool]:
    """Send ``data`` on a fresh connection and read until the server closes it or ``wait_s`` passes.

    Returns what came back, the seconds until the server closed (or ``wait_s``), and whether it closed.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        if data:
            sock.sendall(data)
        start, received = time.monotonic(), b""
        while True:
            sock.settimeout(max(wait_s - (time.monotonic() - start), 0.01))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, time.monotonic() - start, False
            except ConnectionResetError:
                return received, time.monotonic() - start, True
            if not chunk:
                return received, time.monotonic() - start, True
            received += chunk


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


# -- 1. the model repository extension ---------------------------------------------------------


def test_repository_load_and_unload_are_refused_and_the_model_keeps_serving(server, http):
    """KServe registers POST /v2/repository/models/{name}/load|unload (kserve/protocol/rest/v2_endpoints.py,
    ``register_v2_endpoints``) and the gRPC RepositoryModelLoad/Unload RPCs (kserve/protocol/grpc/servicer.py),
    all calling kserve/protocol/model_repository_extension.py, which unloads from the registry unasked.
    One unload used to leave every inference 404 while /v2/health/ready still said 200."""
    for action in ("unload", "load"):
        response = http.post(f"/v2/repository/models/{MODEL_NAME}/{action}")
        assert response.status_code == 403, response.text
        assert "disabled" in response.json()["error"]
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for call, request in (
            (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=MODEL_NAME)),
            (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=MODEL_NAME)),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=10)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready
    assert http.post(V1, json=v1_history(history_sample(entities=2))).status_code == 200
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get(f"/v1/models/{MODEL_NAME}").json() == {"name": MODEL_NAME, "ready": True}
    assert "model_repository_extension" not in http.get("/v2").json()["extensions"]


def test_readiness_is_false_whenever_the_model_is_not_loaded(champion_dir):
    """KServe's DataPlane.ready is true whatever the models' state (kserve/protocol/dataplane.py); the
    server's data plane answers for the model it serves: not loaded, stopped or unregistered is not ready."""
    import asyncio

    registry = ModelRepository()
    model = ForecastModel(MODEL_NAME, champion_dir)
    registry.update(model)
    plane = ServingDataPlane(registry, required=(MODEL_NAME,))

    async def states():
        return await plane.ready(), await plane.model_ready(MODEL_NAME)

    assert asyncio.run(states()) == (False, False)  # registered, not loaded
    model.load()
    assert asyncio.run(states()) == (True, True)
    model.stop()  # what KServe's ModelRepository.unload does first (kserve/model_repository.py)
    assert asyncio.run(states()) == (False, False)
    model.load()
    registry.unload(MODEL_NAME)
    assert asyncio.run(plane.ready()) is False


# -- 2. prediction off the event loop, with back-pressure ---------------------------------------


def test_probes_answer_fast_while_large_requests_run(server):
    """Three large forecasts at once used to hold the event loop: a readiness probe waited 1-5.7 s,
    past kubelet's 1 s probe timeout. On the worker pool the loop answers probes while they run.

    Bounds are generous for a shared CI machine: every probe under 0.8 s, nine in ten under 0.25 s.
    """
    body = large_v1_body(300)
    results: list[int] = []

    def forecast():
        with httpx.Client(base_url=server.http_url, timeout=120) as client:
            results.append(client.post(V1, content=body).status_code)

    threads = [threading.Thread(target=forecast) for _ in range(3)]
    latencies = []
    with httpx.Client(base_url=server.http_url, timeout=30) as probe:
        probe.get("/v2/health/ready")  # connect first: only the answer is timed
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # the bodies are sent and the forecasts under way
        while len(results) < len(threads):
            for path in ("/v2/health/ready", f"/v2/models/{MODEL_NAME}/ready", "/v2/health/live"):
                start = time.perf_counter()
                assert probe.get(path).status_code == 200
                latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert results == [200, 200, 200]
    latencies.sort()
    assert latencies[-1] < 0.8, latencies[-5:]
    assert latencies[int(0.9 * len(latencies))] < 0.25, latencies[-10:]
    assert len(latencies) >= 10, "the large requests ended before the probes could overlap them"


def test_sixteen_concurrent_clients_are_never_refused(http):
    body = v1_history(history_sample(entities=3))

    def one(_):
        return http.post(V1, json=body).status_code

    with ThreadPoolExecutor(16) as clients:
        codes = list(clients.map(one, range(64)))
    assert codes == [200] * 64


def test_a_full_pool_answers_503_with_retry_after(champion_dir, tmp_path):
    """One worker and no queue: a second request while one forecasts is refused at once (REST 503 with
    Retry-After and a JSON error; gRPC RESOURCE_EXHAUSTED), and served again once the worker is free."""
    body = large_v1_body(300)
    args = ("--predict_workers", "1", "--predict_queue", "0")
    with LocalServer(champion_dir, MODEL_NAME, args=args, log_path=tmp_path / "server.log") as running:
        with httpx.Client(base_url=running.http_url, timeout=120) as client:
            with ThreadPoolExecutor(3) as clients:
                responses = list(clients.map(lambda _: client.post(V1, content=body), range(3)))
            refused = [r for r in responses if r.status_code == 503]
            assert [r.status_code for r in responses].count(200) >= 1
            assert refused, [r.status_code for r in responses]
            for response in refused:
                assert response.headers["retry-after"] == "1"
                assert "capacity" in response.json()["error"]
            assert client.post(V1, json=v1_history(history_sample(entities=2))).status_code == 200


# -- 3. timeouts ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(champion_dir, tmp_path_factory):
    """A server with one-second body, header and keep-alive timeouts."""
    log = tmp_path_factory.mktemp("impatient") / "server.log"
    args = ("--body_timeout", "1", "--header_timeout", "1", "--timeout-keep-alive", "1")
    with LocalServer(champion_dir, MODEL_NAME, args=args, log_path=log) as running:
        yield running


def test_a_body_that_stalls_halfway_is_answered_408_and_closed(impatient):
    """Headers and half a body, then nothing: this used to hold the connection for ever."""
    body = json.dumps(v1_history(history_sample(entities=2))).encode()
    head = f"POST {V1} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    response, seconds, closed = raw_exchange(impatient.http_port, head.encode() + body[: len(body) // 2], wait_s=10)
    assert closed and seconds < 5, (seconds, response[:200])
    status, error = status_and_json(response)
    assert status == 408 and "not received within 1 s" in error["error"]


def test_connections_without_complete_headers_and_idle_ones_are_closed(impatient):
    port = impatient.http_port
    for data in (b"", b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n"):  # nothing at all; half the headers
        response, seconds, closed = raw_exchange(port, data, wait_s=10)
        assert closed and seconds < 5 and response == b"", (data, seconds, response)
    # A complete request is answered, then the idle keep-alive connection is closed.
    response, seconds, closed = raw_exchange(port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n", wait_s=10)
    assert response.startswith(b"HTTP/1.1 200") and closed and seconds < 5, (seconds, response[:100])


# -- 4. body size and memory ------------------------------------------------------------------------


def test_an_oversized_body_is_refused_from_its_headers_in_json(server):
    """Content-Length above the limit: 413 before a byte of the body is sent (the test sends none)."""
    head = f"POST {V1} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {50 * 2**20}\r\n\r\n"
    response, seconds, _ = raw_exchange(server.http_port, head.encode(), wait_s=10)
    status, error = status_and_json(response)
    assert status == 413 and "limit" in error["error"] and seconds < 5


def test_an_oversized_chunked_body_is_refused_while_it_streams(server):
    """No Content-Length: the body is counted as it arrives and refused once past the 4 MiB limit,
    without the sender finishing its 8 MiB."""
    chunk = b"x" * 2**20
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(f"POST {V2} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        sent = 0
        try:
            for _ in range(8):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed before the rest
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            response += part
    status, error = status_and_json(response)
    assert status == 413 and "limit" in error["error"]


def _peak_rss(pid: int) -> int:
    """Peak resident memory of ``pid`` in bytes (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


@pytest.mark.slow
def test_concurrent_large_bodies_stay_within_the_memory_budget(champion_dir, tmp_path):
    """Sixteen 15 MiB bodies at once (each refused by the parser after decoding, like the 46 MB body of
    the review). Without a budget every body is held at once and several parse together: about
    16 x 15 = 240 MiB of bodies plus five times each body being parsed. With a 16 MiB budget one
    body is parsed at a time and the others are refused 503 before they are read: the peak
    grows by at most the budget times the parse cost (5 x 16 = 80 MiB) plus slack, 150 MiB."""
    args = ("--max_body_mb", "16", "--max_inflight_body_mb", "16", "--max_history_rows", "1000")
    n = 100_000
    tensors = [{"name": "entity_id", "datatype": "BYTES", "shape": [n], "data": ["e"] * n}]
    tensors += [
        {"name": "ts", "datatype": "INT64", "shape": [n], "data": list(range(1_700_000_000, 1_700_000_000 + n))}
    ]
    tensors += [{"name": c, "datatype": "FP64", "shape": [n], "data": [0.123456789012345] * n} for c in VALUE_COLUMNS]
    body = json.dumps({"inputs": tensors}).encode()
    assert 13 * 2**20 < len(body) < 16 * 2**20
    with LocalServer(champion_dir, MODEL_NAME, args=args, log_path=tmp_path / "server.log") as running:
        pid = running.process.pid
        with httpx.Client(base_url=running.http_url, timeout=120) as client:
            client.get("/v2/health/ready")
            before = _peak_rss(pid)

            def send(_):
                try:
                    return client.post(V2, content=body, headers={"content-type": "application/json"}).status_code
                except httpx.TransportError:
                    return "closed"  # refused and closed before the whole body was sent

            with ThreadPoolExecutor(16) as clients:
                codes = list(clients.map(send, range(16)))
            grown = _peak_rss(pid) - before
            assert client.get("/v2/health/ready").status_code == 200
    assert codes.count(400) >= 1 and set(codes) <= {400, 503, "closed"}, codes
    assert grown < 150 * 2**20, (grown / 2**20, codes)


# -- 5. every error in JSON -------------------------------------------------------------------------


def test_every_client_error_has_a_json_body(http):
    checks = [
        (http.get("/no/such/route"), 404),
        (http.delete("/v2/health/ready"), 405),
        (http.post(V1, content=b"x" * (5 * 2**20), headers={"content-type": "application/json"}), 413),
        (http.post("/v1/models/absent:predict", json={"instances": []}), 404),
        (http.post(V1, content=b"{", headers={"content-type": "application/json"}), 400),
    ]
    for response, status in checks:
        assert response.status_code == status, (status, response.text[:200])
        assert response.headers["content-type"].startswith("application/json"), (status, response.headers)
        assert response.json()["error"], status


# -- 6. the listening address -----------------------------------------------------------------------


def _listening(pid: int) -> dict[int, set[str]]:
    """The addresses ``pid`` listens on, by port."""
    ports: dict[int, set[str]] = {}
    for c in psutil.Process(pid).connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN:
            ports.setdefault(c.laddr.port, set()).add(c.laddr.ip)
    return ports


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # gRPC's dual-stack socket shows 127.0.0.1 as ::ffff:127.0.0.1
    return (mapped or ip).is_loopback


def test_the_container_entry_point_listens_on_every_interface(server):
    """``python -m ml_cloud_optimizer.serving`` is what the pod runs: REST on 0.0.0.0, gRPC on [::] (KServe's own)."""
    listening = _listening(server.process.pid)
    assert listening[server.http_port] == {"0.0.0.0"} and listening[server.grpc_port] == {"::"}


def test_mlco_serve_listens_on_localhost_only(champion_dir, tmp_path):
    """The README says `mlco serve` serves this machine; KServe binds REST to 0.0.0.0 and gRPC to [::]
    (kserve/protocol/rest/server.py, kserve/protocol/grpc/server.py) unless told otherwise."""
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable,
        "-c",
        "import sys; from ml_cloud_optimizer.cli import main; sys.exit(main(sys.argv[1:]))",
        "serve",
        "--model_dir",
        str(champion_dir),
        "--model_name",
        MODEL_NAME,
        "--http_port",
        str(http_port),
        "--grpc_port",
        str(grpc_port),
    ]
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLCO_HOME": str(tmp_path)}
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        listening = _listening(process.pid)
        assert {http_port, grpc_port} <= set(listening), listening
        assert all(_loopback(a) for addresses in listening.values() for a in addresses), listening
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--target_utilization", "0.001"], "--target_utilization"),
        (["--target_utilization", "1.5"], "--target_utilization"),
        (["--peak_threshold", "2"], "--peak_threshold"),
        (["--predict_workers", "0"], "--predict_workers"),
        (["--max_body_mb", "8", "--max_inflight_body_mb", "4"], "--max_inflight_body_mb"),
    ],
)
def test_server_flags_out_of_range_stop_it_in_one_line(champion_dir, flags, named):
    done = subprocess.run(
        [sys.executable, "-m", "ml_cloud_optimizer.serving", "--model_dir", str(champion_dir), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr


def test_light_work_stays_on_the_loop_and_heavy_work_goes_to_the_pool():
    """A thread hop costs more than a one-row answer (``serving.pool``); a history always hops."""
    import asyncio

    from ml_cloud_optimizer.serving import model as served
    from ml_cloud_optimizer.serving.pool import INLINE_BODY_BYTES, INLINE_ROWS, WorkerPool

    async def threads_used() -> tuple[str, str]:
        pool = WorkerPool(workers=1, queue=0)
        here = await pool.run(lambda: threading.current_thread().name, inline=True)
        there = await pool.run(lambda: threading.current_thread().name)
        return here, there

    here, there = asyncio.run(threads_used())
    assert here == threading.current_thread().name and there.startswith("mlco-predict")
    assert served._small_body({"content-length": str(INLINE_BODY_BYTES)})
    assert not served._small_body({"content-length": str(INLINE_BODY_BYTES + 1)}) and not served._small_body({})

    class Request:
        def __init__(self, form: str, rows: int):
            self.form, self.entity_id = form, ["e"] * rows

    assert served._light(Request("features", INLINE_ROWS)) and not served._light(Request("features", INLINE_ROWS + 1))
    assert not served._light(Request("history", 1))
