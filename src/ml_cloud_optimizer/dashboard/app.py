"""The operator dashboard, a Streamlit script: ``streamlit run app.py -- --run-dir DIR``.

``mlco dashboard`` starts it. The run directory comes from ``--run-dir`` after the ``--``
separator (or ``data.default_run_dir()``); its parts are read once and kept until one of
their files changes, so switching views costs only the drawing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

from ml_cloud_optimizer.dashboard import data
from ml_cloud_optimizer.dashboard.views import VIEWS, Parts


def _run_dir(argv: list[str]) -> Path:
    parser = argparse.ArgumentParser(prog="dashboard", add_help=False)
    parser.add_argument("--run-dir", type=Path, default=None)
    known, _ = parser.parse_known_args(argv)
    return (known.run_dir or data.default_run_dir()).absolute()


# Frames are shared read-only between sessions (views never modify them), so they are cached
# as resources: no copy per rerun. The signature argument turns a rewritten run into a new key.
@st.cache_resource(show_spinner="Reading the run directory...", max_entries=4)
def _load(run_dir: str, signature: tuple) -> Parts:  # noqa: ARG001 (a cache key; `_signature` would go unhashed)
    return data.load_parts(run_dir)


st.set_page_config(page_title="mlco dashboard", page_icon=":material/monitoring:", layout="wide")
run_dir = _run_dir(sys.argv[1:])
with st.sidebar:
    st.title("mlco")
    view = st.radio("View", list(VIEWS), key="view") or next(iter(VIEWS))  # None only with no options
    st.caption(f"Run directory: `{run_dir}`")
    if not run_dir.is_dir():
        st.warning(f"{run_dir} does not exist yet.")
    signature = data.run_signature(run_dir)
    with st.expander("Files shown"):
        for name, path, _ in signature:
            st.caption(f"{name}: `{Path(path).relative_to(run_dir)}`")

st.header(view)
VIEWS[view](_load(str(run_dir), signature))
