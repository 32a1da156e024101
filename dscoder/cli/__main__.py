"""`python -m dscoder.cli`: the same command as the `dscoder` script."""

from dscoder.cli.app import app

app()
