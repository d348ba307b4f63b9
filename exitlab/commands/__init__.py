"""Subcommands of the `exitlab` CLI, one module each (see exitlab/cli.py)."""
