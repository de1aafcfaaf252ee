"""`python -m unify`: the command line."""

from unify.cli import app

app()
