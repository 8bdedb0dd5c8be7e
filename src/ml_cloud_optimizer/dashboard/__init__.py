"""The operator dashboard: Streamlit views of one run, drawn with Plotly.

``data`` finds and reads a run's parts, ``figures`` turns them into Plotly figures,
``views`` lays them out, ``app`` is the Streamlit script and ``launch`` builds the
``streamlit run`` command that ``mlco dashboard`` executes.
"""

from ml_cloud_optimizer.dashboard.launch import APP_PATH, streamlit_command

__all__ = ["APP_PATH", "streamlit_command"]
