"""x86 semantics of the generic path, one module per instruction family.

`core` holds what every family shares (`Exec`: registers, flags, memory routing with precise
faults); each family module exports `SEMANTICS`, a dict from `Op` to its function, which
emu/emulate.py merges into the one dispatch table. Adding a family = one module + its rows in the
opcode map (emu/x86-opcode-map.txt: an [ops] row per operation, a [forms] row per form) +
tests/emulate/test_<family>.py.
"""
