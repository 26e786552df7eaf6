"""Composition code: local simulators of the providers (ASGI apps), shipped for dev, tests and demos.

They import FastAPI and uvicorn (the ``simulators`` extra); nothing in the core's inner modules imports them.
"""
