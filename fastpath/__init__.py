"""fastpath: everything about *not* decoding.

The pv contract (a machine-readable spec, `contract_v1.json`, loaded by `fastpath.contract`), the
Python fast path that trusts exactly that contract (`fastpath.fast`), and the validator that checks
a guest against it (`exitlab.tools.validate`). The C extension implements the same fast path; the Python
one is the reference it must agree with.
"""

# The C extension (fastpath._exitlab_c) links libunicorn.so.2 and libcapstone.so.5 by SONAME; the
# wheels' own modules load those libraries, so importing them here first lets the loader resolve
# the extension however it is imported (no LD_LIBRARY_PATH, no rpath).
import capstone  # noqa: E402, F401
import unicorn  # noqa: E402, F401
