"""Print the image's requirement lines from pyproject.toml, so the Dockerfile and pip agree on one list.

The images install their third-party wheels in a layer of their own, before the project's code
arrives, so that a code change rebuilds only the small project layer. That needs the dependency
list without the project: this script reads it from pyproject.toml.

Usage: python requirements.py PYPROJECT [--extra NAME] [--pin SPEC ...]
    --extra NAME    the optional-dependency group NAME instead of the main dependencies
    --pin SPEC      replace the line of that package with SPEC (e.g. torch==2.13.0+cpu); an empty
                    SPEC is ignored
"""

from __future__ import annotations

import argparse
import re
import sys

import tomllib


def requirement_name(line: str) -> str:
    return re.split(r"[\s\[<>=!~;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(pyproject: str, *, extra: str | None = None, pins: list[str] = ()) -> list[str]:
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    lines = project["optional-dependencies"][extra] if extra else project["dependencies"]
    by_name = {requirement_name(pin): pin for pin in pins if pin.strip()}
    return [by_name.pop(requirement_name(line), line) for line in lines] + list(by_name.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject")
    parser.add_argument("--extra")
    parser.add_argument("--pin", action="append", default=[])
    args = parser.parse_args()
    print("\n".join(requirements(args.pyproject, extra=args.extra, pins=args.pin)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
