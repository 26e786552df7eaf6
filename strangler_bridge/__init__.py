"""strangler-bridge core: contracts, settings, flags, errors and provider clients (framework-free)."""

from importlib.metadata import PackageNotFoundError, version

from strangler_bridge.errors import BridgeError, ConfigError
from strangler_bridge.settings import Settings

try:
    __version__ = version("strangler-bridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["BridgeError", "ConfigError", "Settings", "__version__"]
