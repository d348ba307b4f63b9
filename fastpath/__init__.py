"""fastpath: everything about *not* decoding.

The pv contract (a machine-readable spec, `contract_v1.json`, loaded by `fastpath.contract`), the
Python fast path that trusts exactly that contract (`fastpath.fast`), and the validator that checks
a guest against it (`fastpath.validate`). The C extension implements the same fast path; the Python
one is the reference it must agree with.
"""
