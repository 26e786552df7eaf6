"""The legacy side: a Flask extension, blueprint and client that hand GPU steps to the service."""

from flask_plugin.extension import StranglerBridge

__all__ = ["StranglerBridge"]
