"""How long the model server takes to load a tabular champion, now that torch stays out of its way.

Each sample is a fresh interpreter that imports the predictor and loads a LightGBM champion
(``ForecastModel.load``), as ``python -m ml_cloud_optimizer.serving`` does before it opens its ports. The baseline,
in the same run and alternating with it, is the same process importing torch first, which is what
every tabular champion paid before torch was confined to the recurrent models' modules.

Usage: .venv/bin/python bench/server_start.py [--rounds 5]
Prints progress on stderr and one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving_support import champion

LOAD = "from ml_cloud_optimizer.serving.model import ForecastModel; ForecastModel('bench', {dir!r}).load()"


def seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(champion(Path(tmp)))
        load = LOAD.format(dir=model_dir)
        seconds(load)  # warm the file cache for both
        lean, with_torch = [], []
        for i in range(args.rounds):
            lean.append(seconds(load))
            with_torch.append(seconds("import torch; " + load))
            print(f"round {i + 1}/{args.rounds}: {lean[-1]:.2f} s, with torch {with_torch[-1]:.2f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "load_s_median": round(statistics.median(lean), 2),
                "with_torch_s_median": round(statistics.median(with_torch), 2),
                "ratio": round(statistics.median(lean) / statistics.median(with_torch), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
