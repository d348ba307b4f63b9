"""Subcommands of the `exitlab` CLI, one module each (see emu/cli.py)."""
