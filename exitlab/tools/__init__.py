"""The tools layer: programs built on the host paths and the guest side, below the CLI.

`costs` and `report` (the `exitlab bench` sweep and its tables and plots), `decoderbench`
(`exitlab bench --decoders`), `kvmcosts` (`exitlab kvm-bench`), `validate` (`exitlab validate`)
and `fuzz` (`exitlab fuzz` and its atheris harnesses). They import `fastpath` and `emu`, never the
CLI above them (`exitlab.cli`, `exitlab.commands`, `exitlab.api`); tests/test_layers.py checks it.
"""
