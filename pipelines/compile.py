"""Compile the pipeline to the YAML committed under pipelines/compiled/, and tell when that is stale.

The committed YAML is what ``mlco submit`` and ``mlco schedule`` send by default and what a
reviewer reads. It records the images, so compiling with ``MLCO_IMAGE`` or ``MLCO_CUDA_IMAGE``
set gives a different file; the committed one is compiled without them.

Example:
    python -m pipelines.compile            # rewrite pipelines/compiled/workload_pipeline.yaml
    python -m pipelines.compile --check    # exit 1 when it is stale
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from kfp import compiler

__all__ = ["COMPILED_PATH", "compile_pipeline", "render_pipeline", "is_stale"]

COMPILED_PATH = Path(__file__).resolve().parent / "compiled" / "workload_pipeline.yaml"


def compile_pipeline(path: str | Path = COMPILED_PATH) -> Path:
    """Compile ``workload_pipeline`` to ``path`` (YAML: the PipelineSpec, then the Kubernetes platform spec)."""
    from pipelines.workload_pipeline import workload_pipeline

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # "If/Elif/Else... condition `deploy == True`" style notes are not for the user.
        warnings.simplefilter("ignore", UserWarning)
        compiler.Compiler().compile(pipeline_func=workload_pipeline, package_path=str(path))
    return path


def render_pipeline() -> str:
    """The compiled YAML as text, as this code and these settings produce it now."""
    with tempfile.TemporaryDirectory() as tmp:
        return compile_pipeline(Path(tmp) / "pipeline.yaml").read_text()


def is_stale(path: str | Path = COMPILED_PATH) -> bool:
    """True when ``path`` is missing or differs from a fresh compile."""
    path = Path(path)
    return not path.exists() or path.read_text() != render_pipeline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=COMPILED_PATH, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    args = parser.parse_args(argv)
    if args.check:
        if is_stale(args.out):
            print(f"{args.out} is stale: run `mlco compile`", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    print(compile_pipeline(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
