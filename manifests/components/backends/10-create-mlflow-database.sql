-- MLflow keeps its tables in a database of its own, beside the project's warehouse.
CREATE DATABASE mlflow OWNER mlco;
