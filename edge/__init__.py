"""Sortline edge daemon: camera frames -> int8 TFLite -> one MQTT decision per item."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sortline")
except PackageNotFoundError:  # running from a source tree that was not pip-installed
    __version__ = "0+source"
