"""Run the local pipeline with every component in the project's image: ``kfp.local.DockerRunner``.

The subprocess runner proves the DAG and the steps; this runner proves the image. Each task
runs in its own container of the image, as the image's non-root user, exactly as a cluster
would start it, while the warehouse, the MLflow store and the task outputs stay on this host:

- The pipeline is compiled and every executor's image replaced with the one given, so the
  CUDA step runs in the same CPU image here (``--image`` names one image for all).
- The embedded PostgreSQL listens only on a Unix socket inside its private data directory;
  the socket itself is mounted into each container, so tasks reach the warehouse without a
  TCP port being opened or the directory's permissions loosened. Containers use the host's
  network, so a ``DATABASE_URL`` on this host's loopback works as with the subprocess runner.
- ``$MLCO_HOME`` is bind-mounted at the same path (kfp.local mounts the pipeline root there
  too), and a trace given as ``source`` is mounted read-only.
- The image runs as uid 10001; a root-owned pipeline root would stop it writing its outputs,
  so the directories it writes are handed to that user first when this process runs as root.
  A non-root caller runs the containers as itself instead.
- kfp.local takes a container that was removed before its exit code could be read for a
  success, so the run is judged by each task's recorded outputs (see ``missing_outputs``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = [
    "DEFAULT_IMAGE",
    "IMAGE_USER",
    "DockerUnavailable",
    "docker_runner",
    "missing_outputs",
    "pipeline_in_image",
    "require_image",
]

DEFAULT_IMAGE = "ml-cloud-optimizer:local"  # what `make images` tags
IMAGE_USER = 10001  # docker/Dockerfile's unprivileged user
_SOCKET_DIR = "/run/mlco-postgres"  # where a container finds the warehouse's Unix socket


class DockerUnavailable(RuntimeError):
    """No daemon answers, or the image is not there; the message says what to do."""


def pipeline_in_image(pipeline_func, image: str):
    """``pipeline_func`` compiled, with every executor running ``image``; callable like the original."""
    import tempfile

    from kfp import compiler, components

    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline_func, package_path=str(package))
        documents = list(yaml.safe_load_all(package.read_text()))
    for executor in documents[0]["deploymentSpec"]["executors"].values():
        if "container" in executor:
            executor["container"]["image"] = image
    return components.load_component_from_text(yaml.safe_dump_all(documents, sort_keys=False))


def require_image(image: str) -> None:
    """Check that a Docker daemon answers and has ``image``, before any work starts.

    Raises:
        DockerUnavailable: no daemon answers, or ``image`` is not present locally (kfp.local
            would otherwise try to pull it from a registry).
    """
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises several types for "no daemon"
        raise DockerUnavailable(
            f"no Docker daemon answers ({type(exc).__name__}); start dockerd"
            " (tools/start_docker.sh), or run without --runner docker"
        ) from None
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise DockerUnavailable(f"image {image} is not here: build it with `make images`, or pass --image") from None
    finally:
        client.close()


def docker_runner(image: str, *, home: Path, environment: dict[str, str], read_only_paths: Sequence[Path] = ()):
    """A ``DockerRunner`` for ``image`` with mlco's state mounted and the host network.

    Raises:
        DockerUnavailable: see ``require_image``.
    """
    from docker.types import Mount
    from kfp import local

    require_image(image)
    if os.geteuid() == 0:
        user = f"{IMAGE_USER}:{IMAGE_USER}"
        _hand_over(home)
    else:
        user = f"{os.getuid()}:{os.getgid()}"
        environment = {"HOME": "/tmp", **environment}
    mounts = [Mount(target=str(home), source=str(home), type="bind")]
    mounts += [Mount(target=str(p), source=str(p), type="bind", read_only=True) for p in read_only_paths]
    if environment.get("DATABASE_URL"):
        url, socket = _through_socket_mount(environment["DATABASE_URL"])
        if socket is not None:
            environment = {**environment, "DATABASE_URL": url}
            mounts.append(Mount(target=f"{_SOCKET_DIR}/{socket.name}", source=str(socket), type="bind"))
    return local.DockerRunner(network_mode="host", user=user, environment=dict(environment), mounts=mounts)


def _through_socket_mount(url: str) -> tuple[str, Path | None]:
    """For a URL on a Unix socket: the URL a container uses and the host socket to mount; else (url, None)."""
    from psycopg2.extensions import make_dsn, parse_dsn

    params = parse_dsn(url)
    host = params.get("host", "")
    if not host.startswith("/"):
        return url, None
    socket = Path(host) / f".s.PGSQL.{params.get('port', '5432')}"
    return make_dsn(url, host=_SOCKET_DIR), socket


def _hand_over(home: Path) -> None:
    """Let the image's user write where tasks write: task outputs and the local MLflow store.

    The database directory keeps its owner: PostgreSQL runs as the owner of its data.
    """
    os.chown(home, IMAGE_USER, IMAGE_USER)  # sqlite writes its journal beside the database
    for name in ("pipeline_runs", "mlartifacts"):
        (home / name).mkdir(exist_ok=True)
    for top in (home / "pipeline_runs", home / "mlartifacts", home / "mlflow.db"):
        for path in (top, *top.rglob("*")) if top.exists() else ():
            if not path.is_symlink():
                os.chown(path, IMAGE_USER, IMAGE_USER)


def missing_outputs(run_dir: Path) -> list[str]:
    """Tasks of a finished run that left no ``executor_output.json``: they did not really succeed.

    A loop iteration's directory (``for-loop-2-iteration-0``) holds the directories of its tasks.
    """
    missing = []
    for path in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if "-iteration-" in path.name:
            missing += [f"{path.name}/{task}" for task in missing_outputs(path)]
        elif not (path / "executor_output.json").exists():
            missing.append(path.name)
    return missing
