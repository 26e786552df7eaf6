"""The video step: renders on the Express video service, driven by the service (alone or in a pipeline job)."""
