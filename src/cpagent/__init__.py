"""cpagent: an OCPP charge-point agent for Linux controller boards."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cpagent")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
