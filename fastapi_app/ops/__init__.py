"""The operator page: ``GET /ops``, a static shell whose script reads and drives the service's JSON API."""
