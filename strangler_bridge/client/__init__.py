"""The service's HTTP client, framework-free: auth, errors, batches, jobs, breakers.

The Flask half's adapters and the CLI both use it; ``flask_plugin`` re-exports :class:`BridgeClient`.
"""
