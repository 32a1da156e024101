"""The `dscoder` command: the top layer. Nothing else in the package imports it."""

from dscoder.cli.app import app

__all__ = ["app"]
