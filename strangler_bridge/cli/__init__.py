"""Composition code: the ``strangler-bridge`` console script and the dev-time process helpers.

This package may import every part (service, simulators, embedded Redis); nothing in the core's inner
modules imports it.
"""
