"""`python -m runner`: the command line (runner/cli)."""

from runner.cli.main import entry, main

__all__ = ["entry", "main"]

if __name__ == "__main__":
    entry()
