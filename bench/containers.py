"""The images and the containerized pipeline: sizes, build times, and the run beside the subprocess runner.

What it measures, in one run:
- ``make images`` (tools/build_images.sh): with ``--cold`` the build cache and the two images
  are removed first (the base image and the pip download cache stay), then the build is timed
  cold and again warm, on the unchanged tree;
- both images' sizes, beside the targets (2.0 GB and 1.0 GB);
- the predictor image started as the ServingRuntime starts it (uid 10001, read-only root, no
  capabilities): seconds from ``docker run`` to ready;
- ``mlco run`` on the same records and models with ``--runner docker`` and with the default
  subprocess runner: ``docker_vs_subprocess`` is the ratio of the two wall times.

Usage: .venv/bin/python bench/containers.py [--records 20000] [--models lightgbm,gru] [--cold]
Needs a running Docker daemon. Prints progress on stderr and one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ml_cloud_optimizer.models.registry import family

REPO = Path(__file__).resolve().parents[1]
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
IMAGES = {"cpu": "ml-cloud-optimizer:local", "predictor": "ml-cloud-optimizer-predictor:local"}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _docker(*args: str, check: bool = True) -> str:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check).stdout.strip()


def _timed(command: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)
    return time.perf_counter() - started


def build(cold: bool) -> dict:
    env = {**os.environ, "PYTHON": sys.executable}
    figures = {}
    if cold:
        _say("removing the images and the build cache")
        _docker("image", "rm", "-f", *IMAGES.values(), check=False)
        _docker("builder", "prune", "-af", check=False)
        figures["build_cold_s"] = round(
            _timed(["bash", "tools/build_images.sh"], cwd=REPO, env=env, stdout=subprocess.DEVNULL), 1
        )
        _say(f"cold build: {figures['build_cold_s']} s")
    figures["build_warm_s"] = round(
        _timed(["bash", "tools/build_images.sh"], cwd=REPO, env=env, stdout=subprocess.DEVNULL), 1
    )
    _say(f"warm build: {figures['build_warm_s']} s")
    for role, ref in IMAGES.items():
        figures[f"{role}_image_gb"] = round(int(_docker("image", "inspect", "-f", "{{.Size}}", ref)) / 1e9, 3)
    figures["cpu_image_vs_target"] = round(figures["cpu_image_gb"] / 2.0, 3)
    figures["predictor_image_vs_target"] = round(figures["predictor_image_gb"] / 1.0, 3)
    return figures


def predictor_ready_seconds(champion: Path, image: str) -> float:
    """``docker run`` of the model server in ``image`` to ``/v2/health/ready`` answering 200."""
    started = time.perf_counter()
    container = _docker(
        "run",
        "-d",
        "--rm",
        "--user",
        "10001:10001",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--memory",
        "2g",
        "--tmpfs",
        "/tmp",
        "-v",
        f"{champion}:/mnt/models:ro",
        "-p",
        "127.0.0.1::8080",
        image,
        "python",
        "-m",
        "ml_cloud_optimizer.serving",
        "--model_name=bench",
        "--model_dir=/mnt/models",
    )
    try:
        port = _docker("port", container, "8080/tcp").split(":")[-1]
        while time.perf_counter() - started < 120:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the predictor never became ready")
    finally:
        _docker("rm", "-f", container, check=False)


def pipeline_seconds(runner: str, records: int, models: str, home: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MLFLOW_TRACKING_URI")}
    env["MLCO_HOME"] = str(home)
    seconds = _timed(
        [
            sys.executable,
            "-m",
            "ml_cloud_optimizer",
            "run",
            "--runner",
            runner,
            "--records",
            str(records),
            "--models",
            models,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    _say(f"mlco run --runner {runner}: {seconds:.1f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--models", default="lightgbm,gru")
    parser.add_argument("--cold", action="store_true", help="time a build from an empty build cache first")
    args = parser.parse_args()

    figures = build(args.cold)
    with tempfile.TemporaryDirectory(prefix="mlco-bench-") as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o755)
        docker_s = pipeline_seconds("docker", args.records, args.models, tmp / "docker")
        subprocess_s = pipeline_seconds("subprocess", args.records, args.models, tmp / "subprocess")
        champion = tmp / "models"
        shutil.copytree(tmp / "subprocess" / "champion", champion)
        for path in (champion, *champion.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        # The lean image serves tabular champions; a recurrent one needs torch, in the full image.
        kind = json.loads((champion / "bundle.json").read_text())["kind"]
        image = IMAGES["cpu"] if family(kind) == "sequence" else IMAGES["predictor"]
        figures["predictor_ready_s"] = round(predictor_ready_seconds(champion, image), 1)
        figures["predictor_image"] = image
    figures.update(
        {
            "records": args.records,
            "models": args.models,
            "pipeline_docker_s": round(docker_s, 1),
            "pipeline_subprocess_s": round(subprocess_s, 1),
            "docker_vs_subprocess": round(docker_s / subprocess_s, 2),
        }
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
