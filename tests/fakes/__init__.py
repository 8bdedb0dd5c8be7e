"""Small stand-ins for servers that cannot run here: the KFP API and the Kubernetes API (InferenceServices)."""
