"""Soak test of the model server: mixed valid, invalid and oversized traffic, with a readiness probe.

    python bench/serving_soak.py [--seconds 600] [--clients 16] [--model_dir DIR]

Starts the real server (``python -m ml_cloud_optimizer.serving`` through
``ml_cloud_optimizer.serving.local.LocalServer``, ``OMP_NUM_THREADS=1``, a body limit of
``--max_body_mb``) on loopback, serving a small LightGBM champion trained on generated data
(``bench/serving_load.py``'s, unless ``--model_dir`` names one). Then, for ``--warmup`` plus
``--seconds`` seconds:

* ``--clients`` concurrent clients, each on its own keep-alive connection, send requests
  back to back, drawn at random: ``valid`` (v1 and v2 feature rows of 1 and 100 entities,
  one forecast asked for, history of one entity over v1 and v2), ``invalid`` (malformed
  JSON, wrong shapes and types, out-of-range numbers: every one must be answered 4xx) and
  ``oversized`` (bodies just over the body limit: 413, or the connection closed);
* a probe on its own connection GETs ``/v2/health/ready`` every ``--probe_interval`` s.

The clients run in a child process: one asyncio loop writing HTTP/1.1 by hand on raw
sockets (no HTTP library: a few tens of microseconds of CPU per request, against the
server's milliseconds), so the load generator takes a small share of the two cores and the
server, not the client, is what saturates. The probe is a thread of the parent on a blocking
``http.client`` connection, so its latency is not queued behind the clients' event loop. The
JSON line reports the CPU seconds of both the clients and the server to show the split.

Targets (one JSON line last on stdout, each with a pass flag): no 5xx answer (503s, which a
full worker pool may give, are counted apart too); probe p99 <= 100 ms under load, no probe
failure; server RSS (the process and any children) growing less than 10% between the end of
the warm-up and the end of the run; every request answered as its class expects.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
MODEL_NAME = "workload-forecaster"
V1, V2 = f"/v1/models/{MODEL_NAME}:predict", f"/v2/models/{MODEL_NAME}/infer"
WEIGHTS = {"valid": 0.70, "invalid": 0.25, "oversized": 0.05}  # share of requests per class
PROBE_P99_MS, RSS_GROWTH = 100.0, 0.10


def log(message: str) -> None:
    print(f"[serving_soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- request bodies -------------------------------------------------------------------------


def build_bodies(model_dir: Path, max_body_bytes: int) -> dict[str, list[tuple[str, str, bytes]]]:
    """(name, path, body) per class, from the same payloads ``serving_load.py`` measures."""
    from serving_load import make_payloads

    payloads, matrix = make_payloads(model_dir, history_steps=288)
    cols = matrix.shape[1]
    valid = [
        (name, V1 if name.startswith("v1") else V2, payloads[name])
        for name in (
            "v2_features_1",
            "v2_features_100",
            "v2_p50h12_1",
            "v1_features_1",
            "v1_features_100",
            "v2_history_1",
            "v1_history_1",
        )
    ]
    row = matrix[0].tolist()

    def v2(shape, data, datatype="FP64", **extra) -> bytes:
        return json.dumps(
            {"inputs": [{"name": "features", "datatype": datatype, "shape": shape, "data": data}], **extra}
        ).encode()

    history = json.loads(payloads["v2_history_1"])
    cpu = next(t for t in history["inputs"] if t["name"] == "cpu_util")
    ts = next(t for t in history["inputs"] if t["name"] == "ts")

    def history_with(tensor: dict, index: int, value) -> bytes:
        saved = tensor["data"][index]
        tensor["data"][index] = value
        body = json.dumps(history).encode()
        tensor["data"][index] = saved
        return body

    v1_row = json.loads(payloads["v1_features_1"])
    v1_row["instances"][0]["features"] = row[:-1]
    invalid = [
        ("malformed_truncated", V2, payloads["v2_features_100"][: len(payloads["v2_features_100"]) // 2]),
        ("malformed_garbage", V2, bytes(random.Random(0).randrange(256) for _ in range(512))),
        ("malformed_empty", V2, b""),
        ("malformed_v1", V1, payloads["v1_features_1"][:-1] + b",}"),
        ("malformed_nan", V2, v2([1, cols], row).replace(str(row[0]).encode(), b"NaN", 1)),
        ("shape_columns", V2, v2([1, cols + 3], row)),
        ("shape_rows", V2, v2([2, cols], row)),
        ("shape_negative", V2, v2([-1, cols], row)),
        ("shape_huge", V2, v2([10**12, cols], row)),
        ("shape_v1_columns", V1, json.dumps(v1_row).encode()),
        ("type_strings", V2, v2([1, cols], ["x"] * cols)),
        ("type_inputs", V2, json.dumps({"inputs": {"features": row}}).encode()),
        ("range_overflow", V2, v2([1, cols], row).replace(str(row[0]).encode(), b"1e400", 1)),
        ("range_cpu_util", V2, history_with(cpu, -1, 7.5)),
        ("range_negative_util", V2, history_with(cpu, 0, -0.3)),
        ("range_ts", V2, history_with(ts, -1, 9_999_999_999)),
        ("range_horizon", V2, v2([1, cols], row, parameters={"horizons": "-5"})),
        ("range_target_utilization", V2, v2([1, cols], row, parameters={"target_utilization": 3.0})),
    ]
    pad = max_body_bytes + 64 * 1024 - len(payloads["v2_features_100"])
    over = json.loads(payloads["v2_features_100"])
    over["id"] = "x" * pad
    oversized = [("oversized_v2", V2, json.dumps(over).encode())]
    assert len(oversized[0][2]) > max_body_bytes
    return {"valid": valid, "invalid": invalid, "oversized": oversized}


def expected(cls: str, status: int) -> bool:
    """Whether ``status`` is a right answer to a request of class ``cls`` (0: the server closed the connection)."""
    if cls == "valid":
        return status in (200, 503)
    if cls == "invalid":
        return 400 <= status < 500 and status != 413
    return status in (413, 0)


# -- the clients (a child process) ----------------------------------------------------------


async def _exchange(conn: list, port: int, path: str, body: bytes, close: bool) -> tuple[int, dict]:
    """One POST on the connection in ``conn`` (``[reader, writer]``, opened when empty); (status, headers)."""
    if not conn:
        conn.extend(await asyncio.open_connection("127.0.0.1", port))
    reader, writer = conn
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    writer.write(head.encode() + body)  # not drained: a server that answers 413 early must not block us
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readline()).strip() or b"0", 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    else:
        await reader.readexactly(int(headers.get("content-length", 0)))
    if close or headers.get("connection", "").lower() == "close":
        _close(conn)
    return status, headers


def _close(conn: list) -> None:
    if conn:
        conn[1].close()
        conn.clear()


async def _run_clients(port: int, manifest: dict, clients: int, seconds: float, timeout: float) -> dict:
    bodies = {cls: [(name, path, Path(f).read_bytes()) for name, path, f in items] for cls, items in manifest.items()}
    classes, weights = list(WEIGHTS), list(WEIGHTS.values())
    statuses: dict[str, Counter] = {cls: Counter() for cls in classes}
    unexpected: Counter = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng, conn = random.Random(seed), []
        while time.monotonic() < deadline:
            cls = rng.choices(classes, weights)[0]
            name, path, body = rng.choice(bodies[cls])
            started = time.perf_counter()
            try:
                status, headers = await asyncio.wait_for(
                    _exchange(conn, port, path, body, close=cls == "oversized"), timeout
                )
            except asyncio.TimeoutError:
                status, headers = -1, {}  # no answer in time: always wrong
                _close(conn)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status, headers = 0, {}  # the server closed the connection
                _close(conn)
            if cls == "valid" and status == 200:
                latencies.append(time.perf_counter() - started)
            key = str(status) if status > 0 else ("closed" if status == 0 else "timeout")
            statuses[cls][key] += 1
            if status == 503 and "retry-after" not in headers:
                unexpected[f"{name}:503_without_retry_after"] += 1
            if not expected(cls, status):
                unexpected[f"{name}:{key}"] += 1
        _close(conn)

    await asyncio.gather(*(client(seed) for seed in range(clients)))
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "statuses": {cls: dict(c) for cls, c in statuses.items()},
        "unexpected": dict(unexpected),
        "valid_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "valid_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
    }


# -- the probe and the server's footprint ---------------------------------------------------


class Probe(threading.Thread):
    """GET ``/v2/health/ready`` every ``interval`` s on one keep-alive connection; latencies in ms."""

    def __init__(self, port: int, interval: float):
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.samples: list[tuple[float, float]] = []  # (monotonic time, ms)
        self.failures: list[tuple[float, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.halt.wait(self.interval):
            started = time.perf_counter()
            try:
                conn.request("GET", "/v2/health/ready")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append((time.monotonic(), f"status {response.status}"))
                    continue
                self.samples.append((time.monotonic(), (time.perf_counter() - started) * 1e3))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append((time.monotonic(), type(exc).__name__))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.close()


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [pid], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out += children
        todo += children
    return out


def footprint(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds) of ``pid`` and its descendants."""
    rss_kib, ticks = 0, 0
    for p in _descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss_kib += next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")), 0)
        ticks += int(stat[11]) + int(stat[12])  # utime, stime
    return rss_kib / 1024, ticks / os.sysconf("SC_CLK_TCK")


# -- the run --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measured seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=None, help="load before measuring (default 10%%, <= 60 s)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--probe_interval", type=float, default=0.1, help="seconds between probes (default 0.1)")
    parser.add_argument("--max_body_mb", type=float, default=1.0, help="the server's body limit (default 1 MiB)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take (default 30)")
    parser.add_argument("--model_dir", default=None, help="champion directory (default: train a small one)")
    parser.add_argument(
        "--server_args", default="", help="more flags for the server, e.g. '--predict_workers 2' (default none)"
    )
    parser.add_argument("--clients_only", nargs=3, metavar=("PORT", "MANIFEST", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients_only:
        port, manifest, seconds = args.clients_only
        report = asyncio.run(
            _run_clients(int(port), json.loads(Path(manifest).read_text()), args.clients, float(seconds), args.timeout)
        )
        print(json.dumps(report))
        return 0

    from serving_load import train_champion

    from ml_cloud_optimizer.serving.local import LocalServer

    warmup = args.warmup if args.warmup is not None else min(60.0, 0.1 * args.seconds)
    max_body = int(args.max_body_mb * 2**20)
    with tempfile.TemporaryDirectory(prefix="mlco-serving-soak-") as tmp:
        workdir = Path(tmp)
        model_dir = Path(args.model_dir) if args.model_dir else train_champion(workdir / "champion")
        bodies = build_bodies(model_dir, max_body)
        manifest = {}
        for cls, items in bodies.items():
            for name, path, body in items:
                (workdir / f"{name}.body").write_bytes(body)
                manifest.setdefault(cls, []).append((name, path, str(workdir / f"{name}.body")))
        (workdir / "manifest.json").write_text(json.dumps(manifest))
        log(", ".join(f"{len(v)} {k} bodies" for k, v in bodies.items()) + f"; body limit {max_body:,} bytes")
        server = LocalServer(
            model_dir,
            MODEL_NAME,
            args=("--max_body_mb", str(args.max_body_mb), *shlex.split(args.server_args)),
            log_path=workdir / "server.log",
            env={"OMP_NUM_THREADS": "1"},
        )
        with server:
            pid = server.process.pid
            rss_idle, cpu_begin = footprint(pid)
            log(f"server up (pid {pid}, RSS {rss_idle:.0f} MiB); {warmup:.0f} s warm-up, then {args.seconds:.0f} s")
            probe = Probe(server.http_port, args.probe_interval)
            probe.start()
            clients = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--clients",
                    str(args.clients),
                    "--timeout",
                    str(args.timeout),
                    "--clients_only",
                    str(server.http_port),
                    str(workdir / "manifest.json"),
                    str(warmup + args.seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            started = time.monotonic()
            time.sleep(warmup)
            measured_from = time.monotonic()
            rss_start, _ = footprint(pid)
            rss_peak = rss_end = rss_start
            cpu_end = cpu_begin
            while clients.poll() is None:
                time.sleep(1.0)
                if clients.poll() is None and server.process.poll() is None:
                    rss_end, cpu_end = footprint(pid)  # the last sample while the load still runs
                    rss_peak = max(rss_peak, rss_end)
                if time.monotonic() - started > warmup + args.seconds + 10 * args.timeout:
                    clients.kill()
            load_ended = time.monotonic()
            probe.halt.set()
            probe.join()
            crashed = server.process.poll() is not None
            if crashed:
                log(f"FAIL: the server exited with status {server.process.returncode}")
                log((workdir / "server.log").read_text(errors="replace")[-3000:])
            output = clients.stdout.read() if clients.stdout else ""
    if clients.returncode != 0 or not output.strip():
        log(f"FAIL: the clients exited with status {clients.returncode}")
        return 1
    load = json.loads(output.strip().splitlines()[-1])
    probe_ms = np.array([ms for t, ms in probe.samples if measured_from <= t <= load_ended] or [np.nan])
    probe_failures = [why for t, why in probe.failures if measured_from <= t <= load_ended]
    statuses = load["statuses"]
    total = Counter()
    for counts in statuses.values():
        total.update(counts)
    five_xx = sum(n for s, n in total.items() if s.isdigit() and int(s) >= 500)
    growth = rss_end / rss_start - 1
    result = {
        "seconds": args.seconds,
        "warmup_s": warmup,
        "clients": args.clients,
        "requests": {cls: sum(c.values()) for cls, c in statuses.items()},
        "requests_per_s": round(sum(total.values()) / (warmup + args.seconds), 1),
        "statuses": statuses,
        "status_5xx": five_xx,
        "status_503": total.get("503", 0),
        "unexpected": load["unexpected"],
        "valid_p50_ms": load["valid_p50_ms"],
        "valid_p99_ms": load["valid_p99_ms"],
        "probes": int(np.isfinite(probe_ms).sum()),
        "probe_failures": len(probe_failures),
        "probe_p50_ms": round(float(np.percentile(probe_ms, 50)), 2),
        "probe_p99_ms": round(float(np.percentile(probe_ms, 99)), 2),
        "rss_idle_mb": round(rss_idle, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "rss_growth": round(growth, 4),
        "server_cpu_s": round(cpu_end - cpu_begin, 1),
        "client_cpu_s": load["cpu_s"],
        "server_crashed": crashed,
        "pass_no_5xx": five_xx == 0,
        "pass_probe_p99": bool(probe_ms.size and float(np.percentile(probe_ms, 99)) <= PROBE_P99_MS)
        and not probe_failures,
        "pass_rss_growth": growth < RSS_GROWTH,
        "pass_expected_status": not load["unexpected"],
    }
    result["pass"] = not crashed and all(v for k, v in result.items() if k.startswith("pass_"))
    log(
        f"{sum(total.values()):,} requests {dict(total)}; probe p99 {result['probe_p99_ms']} ms;"
        f" RSS {rss_start:.0f} -> {rss_end:.0f} MiB; unexpected {load['unexpected'] or 'none'}"
    )
    print(json.dumps(result))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
