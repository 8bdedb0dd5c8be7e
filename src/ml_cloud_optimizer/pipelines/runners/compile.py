"""Compile the pipelines to the YAML committed under pipelines/compiled/, and tell when it is stale.

The committed YAML is what ``mlco submit`` and ``mlco schedule`` send by default and what a
reviewer reads. It records the images and the GPU node selector, so compiling with
``MLCO_IMAGE``, ``MLCO_CUDA_IMAGE`` or ``MLCO_GPU_NODE_SELECTOR`` set gives a different file; the
committed one is compiled without them (see ``ml_cloud_optimizer.pipelines.settings``).

Example:
    python -m ml_cloud_optimizer.pipelines.runners.compile            # rewrite every compiled/*.yaml
    python -m ml_cloud_optimizer.pipelines.runners.compile --check    # exit 1 when one is stale
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import warnings
from pathlib import Path

from kfp import compiler

__all__ = ["COMPILED_PATH", "PIPELINES", "compile_pipeline", "is_stale", "render_pipeline"]

_COMPILED = Path(__file__).resolve().parent.parent / "compiled"
# name -> (module:function, committed YAML). Imported on use, so compiling one never imports the other.
PIPELINES = {
    "workload": (
        "ml_cloud_optimizer.pipelines.workload_pipeline:workload_pipeline",
        _COMPILED / "workload_pipeline.yaml",
    ),
    "batch": ("ml_cloud_optimizer.pipelines.batch_pipeline:batch_pipeline", _COMPILED / "batch_pipeline.yaml"),
}
COMPILED_PATH = PIPELINES["workload"][1]


def compile_pipeline(path: str | Path | None = None, pipeline: str = "workload") -> Path:
    """Compile ``pipeline`` to ``path`` (YAML: the PipelineSpec, then the Kubernetes platform spec)."""
    target, func = _pipeline(pipeline)
    path = Path(path or target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # "If/Elif/Else... condition `deploy == True`" style notes are not for the user.
        warnings.simplefilter("ignore", UserWarning)
        compiler.Compiler().compile(pipeline_func=func, package_path=str(path))
    return path


def render_pipeline(pipeline: str = "workload") -> str:
    """The compiled YAML as text, as this code and these settings produce it now."""
    with tempfile.TemporaryDirectory() as tmp:
        return compile_pipeline(Path(tmp) / "pipeline.yaml", pipeline).read_text()


def is_stale(path: str | Path | None = None, pipeline: str = "workload") -> bool:
    """True when the compiled YAML at ``path`` (default: the committed one) is missing or differs from a fresh
    compile."""
    path = Path(path or PIPELINES[pipeline][1])
    return not path.exists() or path.read_text() != render_pipeline(pipeline)


def _pipeline(name: str):
    try:
        spec, target = PIPELINES[name]
    except KeyError:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}") from None
    module, func = spec.split(":")
    return target, getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml_cloud_optimizer.pipelines.runners.compile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default=None, help="one pipeline (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead (one pipeline; default workload)")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    args = parser.parse_args(argv)
    names = [args.pipeline or "workload"] if args.out or args.pipeline else list(PIPELINES)
    stale = False
    for name in names:
        target = args.out or PIPELINES[name][1]
        if not args.check:
            print(compile_pipeline(target, name))
        elif is_stale(target, name):
            print(f"{target} is stale: run `mlco compile`", file=sys.stderr)
            stale = True
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
