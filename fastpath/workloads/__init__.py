"""Guest workloads of `exitlab bench` (assembled with KICKS, PORT and HC defined)."""

from pathlib import Path

DIR = Path(__file__).resolve().parent
"""Where the workload sources are, for the tools that assemble them (bench sweep, kvm-bench)."""
