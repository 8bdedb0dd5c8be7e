"""Load test of the model server against MLServer serving the same LightGBM booster.

    python bench/serving_load.py [--model_dir DIR] [--duration S] [--rounds N] [--connections N]

With no ``--model_dir`` it first trains a small LightGBM champion (forecaster with p90
boosters, plus the peak classifier) on generated data, so it runs on a fresh clone. Then:

1. starts our server (``python -m ml_cloud_optimizer.serving``) and two MLServers with
   mlserver-lightgbm (installed in ``.venv-mlserver`` by ``tools/install_mlserver.sh``), both
   serving the champion's ``p50_h12`` booster file:

   * ``mlserver`` predicts inline, in its HTTP process (``"parallel_workers": 0`` in its
     ``settings.json``), as ours does: the like-for-like baseline;
   * ``mlserver_default`` keeps MLServer's default, one separate inference worker process
     (``parallel_workers`` 1), shown beside it.

   Each MLServer's forecasts for 100 feature rows must equal ours within ``--tolerance``
   (ours is the last value plus the booster's delta, clipped); otherwise the script says so
   on stderr and exits 1 before measuring anything;
2. drives them from a separate process (``wrk``, or a Python asyncio driver where wrk is
   absent) with ``--connections`` concurrent connections, one server at a time, with
   single-row and 100-row feature-row requests over v2 (byte-identical bodies for every
   server) and v1 (ours only), then our server alone with history requests (the last
   ``--history_steps`` 5-minute samples of 1 and 100 entities) over v1 and v2;
3. prints one JSON line last: requests/s, rows/s, p50 and p99 latency per server and case
   (medians over rounds), and per batch size:

   * ``vs_mlserver``: our rows/s / inline MLServer's rows/s on bodies that ask for the
     booster's one forecast (``parameters.horizons`` and ``outputs``, which MLServer
     ignores): the same work on the same bodies, the headline;
   * ``vs_mlserver_default``: the same against MLServer's default setup;
   * ``vs_mlserver_full_answer`` (and ``_default``): plain bodies, where we answer every
     horizon and quantile (four boosters) plus capacity while MLServer runs its one booster;
   * ``vs_mlserver_v1_full_answer``: our v1 full answer against inline MLServer's v2;
   * ``history_vs_mlserver_features``: our history-in rows/s against inline MLServer on
     ready-made feature rows;
   * ``mlserver_inline_vs_default``: what the inline setting is worth to MLServer itself.

Every server gets ``OMP_NUM_THREADS=1`` and one HTTP process. All stay up, but only one is
driven at a time: each feature-row case runs ``--rounds`` times, the servers taking turns
within a round, so a drift in the machine's background load reaches every server alike.
Each ratio is a ratio of medians: the median over rounds of our rows/s divided by the
median over rounds of theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "workload-forecaster"
MLSERVER_MODEL = "lightgbm-booster"
HEADLINE = 12
BATCHES = (1, 100)
_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("MLCO_BODY_FILE"), "rb"); wrk.body = f:read("*a"); f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.1f %.1f %d\\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def log(message: str) -> None:
    print(f"[serving_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the champion and the payloads ----------------------------------------------------------


def train_champion(directory: Path) -> Path:
    """A small LightGBM champion (p50 and p90 boosters per horizon, plus the peak classifier)."""
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.models.bundle import ModelBundle
    from ml_cloud_optimizer.models.peak import PeakClassifier
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster

    fleet = generate_fleet(12 * 288 * 9, entities=12, seed=1)
    log(f"training a LightGBM champion on {len(fleet.metrics):,} generated rows")
    forecaster = LightGBMForecaster(n_estimators=200, max_train_rows=30_000, n_jobs=2).fit(fleet.metrics)
    peak = PeakClassifier(n_estimators=60, early_stopping_rounds=10).fit(fleet.metrics)
    log("trees per booster: " + ", ".join(f"{k} {b.num_trees()}" for k, b in forecaster.boosters_.items()))
    return ModelBundle(forecaster, peak, {"source": "bench/serving_load.py"}).save(directory)


def make_payloads(model_dir: Path, history_steps: int) -> tuple[dict[str, bytes], np.ndarray]:
    """Request bodies per case, and the 100 feature rows (for the cross-check with MLServer)."""
    import pandas as pd

    import ml_cloud_optimizer.models.tabular  # noqa: F401 - registers the tabular kinds
    from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.features import build_features
    from ml_cloud_optimizer.models.bundle import ModelBundle

    spec = ModelBundle.load(model_dir).forecaster.feature_spec
    # Entities the champion never saw, with enough history for every window to be complete.
    metrics = generate_fleet(100 * 288 * 9, entities=100, seed=99, start="2026-04-06T00:00:00Z").metrics
    features = build_features(metrics, spec)
    # The latest row of each entity with every feature present: JSON (and MLServer) has no NaN.
    rows = features.loc[features[spec.columns].notna().all(axis=1)].groupby("entity_id").tail(1)
    matrix = rows[spec.columns].to_numpy(dtype="float64")
    if len(matrix) < max(BATCHES):
        raise RuntimeError(f"only {len(matrix)} complete feature rows; need {max(BATCHES)}")
    ids = rows["entity_id"].astype(str).tolist()
    history = metrics.groupby("entity_id").tail(history_steps)[["entity_id", "ts", *VALUE_COLUMNS]]
    payloads = {}
    for n in BATCHES:
        block = matrix[:n]
        tensor = {"name": "features", "datatype": "FP64", "shape": list(block.shape), "data": block.ravel().tolist()}
        payloads[f"v2_features_{n}"] = json.dumps({"inputs": [tensor]}).encode()
        # The same rows asking for the one forecast MLServer's booster gives (MLServer ignores both fields).
        payloads[f"v2_p50h{HEADLINE}_{n}"] = json.dumps(
            {
                "inputs": [tensor],
                "parameters": {"horizons": str(HEADLINE)},
                "outputs": [{"name": f"p50_h{HEADLINE}"}],
            }
        ).encode()
        payloads[f"v1_features_{n}"] = json.dumps(
            {"instances": [{"entity_id": e, "features": row} for e, row in zip(ids[:n], block.tolist(), strict=True)]}
        ).encode()
        part = history[history["entity_id"].isin(ids[:n])]
        epoch = pd.to_datetime(part["ts"], utc=True).astype("int64") // 10**9
        payloads[f"v2_history_{n}"] = json.dumps(
            {
                "inputs": [
                    {
                        "name": "entity_id",
                        "datatype": "BYTES",
                        "shape": [len(part)],
                        "data": part["entity_id"].astype(str).tolist(),
                    },
                    {"name": "ts", "datatype": "INT64", "shape": [len(part)], "data": epoch.tolist()},
                    *(
                        {"name": c, "datatype": "FP64", "shape": [len(part)], "data": part[c].tolist()}
                        for c in VALUE_COLUMNS
                    ),
                ]
            }
        ).encode()
        instances = []
        for entity, g in part.groupby("entity_id", sort=False):
            series = {"ts": epoch.loc[g.index].tolist(), **{c: g[c].tolist() for c in VALUE_COLUMNS}}
            instances.append({"entity_id": str(entity), "history": series})
        payloads[f"v1_history_{n}"] = json.dumps({"instances": instances}).encode()
    return payloads, matrix


# -- servers ------------------------------------------------------------------------------


def post(url: str, body: bytes, timeout: float = 120) -> dict:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_mlserver(
    model_dir: Path, workdir: Path, env: dict, name: str, parallel_workers: int | None
) -> tuple[subprocess.Popen, str]:
    """MLServer with mlserver-lightgbm serving the champion's headline p50 booster file.

    ``parallel_workers`` 0 predicts inline in the HTTP process; None keeps MLServer's default
    (one separate inference worker process).
    """
    from ml_cloud_optimizer.serving.local import free_port

    subprocess.run([str(ROOT / "tools" / "install_mlserver.sh")], check=True, stdout=sys.stderr)
    repo = workdir / name
    (repo / MLSERVER_MODEL).mkdir(parents=True, exist_ok=True)
    booster = repo / MLSERVER_MODEL / "model.bst"
    shutil.copy(model_dir / f"p50_h{HEADLINE}.txt", booster)
    (repo / MLSERVER_MODEL / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MLSERVER_MODEL,
                "implementation": "mlserver_lightgbm.LightGBMModel",
                "parameters": {"uri": "./model.bst"},
            }
        )
    )
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "debug": False,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "host": "127.0.0.1",
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers  # server-wide (the model-level field is deprecated)
    (repo / "settings.json").write_text(json.dumps(settings))
    with open(workdir / f"{name}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(ROOT / ".venv-mlserver" / "bin" / "mlserver"), "start", "."],
            cwd=repo,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(f"{url}/v2/models/{MLSERVER_MODEL}/ready", process)
    except BaseException:
        stop(process)
        raise
    return process, url


# -- load --------------------------------------------------------------------------------


def drive(url: str, body: bytes, connections: int, duration: float, workdir: Path) -> dict:
    """Drive ``url`` with ``body`` from a separate process; requests/s and latency percentiles in ms."""
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    if shutil.which("wrk"):
        script = workdir / "post.lua"
        script.write_text(_WRK_SCRIPT)
        threads = min(2, connections)
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration:.0f}s",
                "--timeout",
                "60s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "MLCO_BODY_FILE": str(body_file)},
            check=True,
        ).stdout
        line = next(x for x in out.splitlines() if x.startswith("RESULT"))
        requests, status_errors, socket_errors, p50_us, p99_us, duration_us = (float(v) for v in line.split()[1:])
        seconds = duration_us / 1e6
        return {
            "rps": requests / seconds,
            "p50_ms": p50_us / 1e3,
            "p99_ms": p99_us / 1e3,
            "requests": int(requests),
            "errors": int(status_errors + socket_errors),
            "driver": "wrk",
        }
    out = subprocess.run(
        [sys.executable, __file__, "--drive", url, str(body_file), str(connections), str(duration)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


async def _python_driver(url: str, body: bytes, connections: int, duration: float) -> dict:
    import httpx

    latencies, errors = [], 0
    deadline = time.perf_counter() + duration

    async def worker(client):
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.post(url, content=body, headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=connections)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1e3
    return {
        "rps": len(ms) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests": len(ms),
        "errors": errors,
        "driver": "python-httpx",
    }


def measure(url: str, body: bytes, rows: int, seconds: float, args, workdir: Path) -> dict:
    """One driven run of ``body`` against ``url`` after a short warm-up."""
    for _ in range(3):  # first calls load code paths and caches
        post(url, body)
    result = drive(url, body, args.connections, seconds, workdir)
    result["rows_per_s"] = result["rps"] * rows
    return result


def summarize(runs: list[dict]) -> dict:
    """Median requests/s, rows/s and latencies over the rounds of one case, and the error total."""
    out = {key: round(float(np.median([r[key] for r in runs])), 3) for key in ("rps", "rows_per_s", "p50_ms", "p99_ms")}
    out.update(rounds=len(runs), errors=sum(r["errors"] for r in runs), driver=runs[0]["driver"])
    return out


MLSERVERS = {"mlserver": 0, "mlserver_default": None}  # name -> parallel_workers (None: MLServer's default)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", default=None, help="champion directory (default: train a small one)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per feature-row run (default 5)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds per feature-row case, the servers taking turns within each (default 3)",
    )
    parser.add_argument("--history_duration", type=float, default=10.0, help="seconds per history case")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--history_steps", type=int, default=288, help="history samples per entity (default 288)")
    parser.add_argument(
        "--tolerance", type=float, default=1e-6, help="largest |our p50 - MLServer's| allowed (default 1e-6)"
    )
    parser.add_argument("--skip_mlserver", action="store_true", help="measure our server only")
    parser.add_argument("--drive", nargs=4, metavar=("URL", "BODY", "CONNECTIONS", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        url, body_file, connections, seconds = args.drive
        print(
            json.dumps(asyncio.run(_python_driver(url, Path(body_file).read_bytes(), int(connections), float(seconds))))
        )
        return 0

    sys.path.insert(0, str(ROOT))
    from ml_cloud_optimizer.serving.local import LocalServer

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ours_v2, ours_v1 = f"/v2/models/{MODEL_NAME}/infer", f"/v1/models/{MODEL_NAME}:predict"
    theirs_v2 = f"/v2/models/{MLSERVER_MODEL}/infer"
    result: dict = {
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "history_steps": args.history_steps,
    }
    runs: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory(prefix="mlco-serving-load-") as tmp:
        workdir = Path(tmp)
        model_dir = Path(args.model_dir) if args.model_dir else train_champion(workdir / "champion")
        payloads, matrix = make_payloads(model_dir, args.history_steps)
        log("payload sizes: " + ", ".join(f"{k} {len(v) / 1024:.0f} KiB" for k, v in payloads.items()))
        log("starting our server")
        with LocalServer(model_dir, MODEL_NAME, log_path=workdir / "ours.log", env={"OMP_NUM_THREADS": "1"}) as ours:
            mlservers: dict[str, tuple[subprocess.Popen, str]] = {}
            try:
                for name, workers in ({} if args.skip_mlserver else MLSERVERS).items():
                    log(f"starting {name} (parallel_workers {'default' if workers is None else workers})")
                    mlservers[name] = start_mlserver(model_dir, workdir, env, name, workers)
                ours_answer = post(ours.http_url + ours_v2, payloads["v2_features_100"])
                for name, (_, url) in mlservers.items():
                    their_answer = post(url + theirs_v2, payloads["v2_features_100"])
                    diff = _cross_check(ours_answer, their_answer, matrix, model_dir)
                    log(f"cross-check {name}: our p{HEADLINE} forecast vs its booster: max |diff| {diff:.2e}")
                    result[f"{name}_max_abs_diff"] = diff
                    if not diff <= args.tolerance:
                        log(
                            f"FAIL: {name} and our server disagree on the same rows: max |diff| {diff:.3g}"
                            f" > --tolerance {args.tolerance:g}; not measuring"
                        )
                        return 1
                for round_ in range(1, args.rounds + 1):
                    for n in BATCHES:
                        for body in (f"v2_p50h{HEADLINE}_{n}", f"v2_features_{n}", f"v1_features_{n}"):
                            path = ours_v1 if body.startswith("v1") else ours_v2
                            targets = [("ours", ours.http_url + path)]
                            if body.startswith("v2"):
                                targets += [(name, url + theirs_v2) for name, (_, url) in mlservers.items()]
                            for server, url in targets:
                                run = measure(url, payloads[body], n, args.duration, args, workdir)
                                runs.setdefault(server, {}).setdefault(body, []).append(run)
                                log(
                                    f"round {round_} {server} {body}: {run['rps']:.1f} req/s, {run['rows_per_s']:.0f}"
                                    f" rows/s, p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms,"
                                    f" errors {run['errors']}"
                                )
                for n in BATCHES:
                    for body, path in ((f"v2_history_{n}", ours_v2), (f"v1_history_{n}", ours_v1)):
                        run = measure(ours.http_url + path, payloads[body], n, args.history_duration, args, workdir)
                        runs.setdefault("ours", {})[body] = [run]
                        log(
                            f"ours {body}: {run['rps']:.2f} req/s, {run['rows_per_s']:.1f} rows/s,"
                            f" p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, errors {run['errors']}"
                        )
            finally:
                for process, _ in mlservers.values():
                    stop(process)
    for server, cases in runs.items():
        result[server] = {case: summarize(case_runs) for case, case_runs in cases.items()}

    def ratio(a: str, a_case: str, b: str, b_case: str) -> float:
        """Median rows/s of ``a`` over rounds / median rows/s of ``b`` over rounds."""
        return round(result[a][a_case]["rows_per_s"] / result[b][b_case]["rows_per_s"], 4)

    for name in mlservers:
        suffix = "" if name == "mlserver" else name.removeprefix("mlserver")
        # Headline: byte-identical bodies asking every server for the same booster's forecast.
        headline = f"v2_p50h{HEADLINE}"
        result[f"vs_mlserver{suffix}"] = {n: ratio("ours", f"{headline}_{n}", name, f"{headline}_{n}") for n in BATCHES}
        # Our full answer (4 boosters, capacity) against MLServer's one booster, same plain bodies.
        result[f"vs_mlserver{suffix}_full_answer"] = {
            n: ratio("ours", f"v2_features_{n}", name, f"v2_features_{n}") for n in BATCHES
        }
    if "mlserver" in mlservers:
        result["vs_mlserver_v1_full_answer"] = {
            n: ratio("ours", f"v1_features_{n}", "mlserver", f"v2_features_{n}") for n in BATCHES
        }
        # History in (the server computes the features) beside MLServer on ready-made rows.
        result["history_vs_mlserver_features"] = {
            n: ratio("ours", f"v2_history_{n}", "mlserver", f"v2_features_{n}") for n in BATCHES
        }
    if len(mlservers) == len(MLSERVERS):
        result["mlserver_inline_vs_default"] = {
            n: ratio("mlserver", f"v2_p50h{HEADLINE}_{n}", "mlserver_default", f"v2_p50h{HEADLINE}_{n}")
            for n in BATCHES
        }
    print(json.dumps(result))
    return 0


def _cross_check(ours: dict, theirs: dict, matrix: np.ndarray, model_dir: Path) -> float:
    """Both servers ran the same booster: our p50 is the last value plus MLServer's raw (delta) output, clipped."""
    from ml_cloud_optimizer.data.schema import UTIL_MAX
    from ml_cloud_optimizer.models.bundle import ModelBundle

    forecaster = ModelBundle.load(model_dir).forecaster
    anchor = matrix[:, forecaster.feature_spec.columns.index(forecaster.feature_spec.target)]
    raw = np.asarray(theirs["outputs"][0]["data"], dtype="float64")
    level = raw if forecaster.target_mode_ == "level" else anchor + raw
    ours_p50 = np.asarray(next(o["data"] for o in ours["outputs"] if o["name"] == f"p50_h{HEADLINE}"))
    if ours_p50.shape != level.shape:
        return float("inf")
    return float(np.max(np.abs(np.clip(level, 0.0, UTIL_MAX) - ours_p50)))


if __name__ == "__main__":
    sys.exit(main())
