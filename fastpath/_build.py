"""cffi (API mode) build of the C hot loop: `fastpath._exitlab_c`.

Compiled against the headers shipped in the unicorn and capstone wheels and linked with their
libraries by full file name (libunicorn.so.2, libcapstone.so).  At run time fastpath.cengine
imports `unicorn` and `capstone` first so the loader finds both by SONAME (see DESIGN.md).
The cdef below repeats the flat structs of fastpath/csrc/*.h; cffi checks every layout when it
compiles, so a drift between the two is a build error, not a silent corruption.
"""

from __future__ import annotations

import os
from pathlib import Path

import capstone
import unicorn
from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
SOURCES = ["insn_subset.c", "paths.c", "replay.c", "live.c", "lockguard.c", "decoderbench.c",
           "sem.c", "sem_alu.c", "sem_xchg.c", "sem_bit.c", "sem_sse.c",
           "sem_string.c", "sem_muldiv.c", "sem_shift.c", "sem_bitscan.c", "sem_cond.c"]
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-fno-strict-aliasing"]

CDEF = """
struct xl_devstate {
    uint64_t notify_base, notify_size;
    uint64_t regs_base, regs_size;
    uint64_t notify_port, console_port;
    uint64_t kicks[64];
    uint64_t kicks_other;
    uint64_t notify_writes, notify_reads, notify_unmatched;
    uint64_t regs_reads, regs_writes;
    uint64_t unclaimed_mmio_read, unclaimed_mmio_write, unclaimed_pio_in, unclaimed_pio_out;
    uint64_t console_len;
    uint8_t console[4096];
    uint8_t regs[4096];
    uint64_t eventfd_counts[16];
};
struct xl_err {
    uint64_t rip;
    uint64_t addr;
    uint32_t status;
    uint8_t path;
    uint8_t kind;
    uint8_t len;
    uint8_t bytes[15];
};
struct xl_result {
    uint64_t gpa;
    uint64_t value;
    uint64_t next_rip;
    uint64_t acc_hash;
    uint64_t wb;
    uint32_t status;
    uint8_t size;
    uint8_t write;
    uint8_t n_acc;
    uint8_t path;
};
struct xl_ctx {
    struct xl_devstate dev;
    uint64_t counts[7];
    uint64_t fallbacks;
    uint64_t violations;
    uint64_t errors;
    struct xl_err err;
    uint64_t fault_addr;
    uint64_t last_read;
    uint64_t cs_handle[3];
    void *cs_insn[3];
    uint32_t trap_len;
    uint32_t pad;
    struct xl_devtab *tab;
};
struct xl_insn {
    int64_t disp;
    uint64_t imm;
    uint8_t kind, size, dst_size, reg, hi8, len, rep, seg;
    uint8_t addr_size, base, index, scale, rex, opcode, map, pad;
};
struct xl_record {
    uint8_t kind;
    uint8_t mode;
    uint8_t size;
    uint8_t insn_len;
    uint8_t insn[15];
    uint8_t pad[5];
    uint64_t rip;
    uint64_t addr;
    uint64_t value;
    uint64_t regs[20];
};
struct xl_replay_stats {
    uint64_t n;
    uint64_t ns;
    uint64_t ticks;
    uint64_t errors;
};
struct xl_live_ctl;
struct xl_live_cfg {
    uint64_t ram;
    uint64_t ram_base;
    uint64_t ram_size;
    uint64_t start_rip;
    uint64_t until;
    uint64_t max_insns;
    uint64_t timeout_ns;
    uint64_t max_exits;
    int32_t mode;
    int32_t path;
    int32_t style;
    int32_t inplace_raw;
    struct xl_live_ctl *ctl;
    int32_t trap;
    int32_t pad2;
};
struct xl_live_result {
    uint64_t rip;
    uint64_t addr;
    uint64_t exits;
    uint64_t mmio_exits, pio_exits, hypercalls;
    uint64_t segments;
    uint64_t inplace_mismatch;
    uint64_t kinds[5];     /* exits per enum xl_exit_kind */
    uint64_t ns, ticks;
    uint32_t stop;
    uint32_t uc_err;
    uint32_t status;
    uint32_t access;
    uint8_t len;
    uint8_t bytes[15];
};

struct xl_live_ctl *xl_live_ctl_new(void);
void xl_live_ctl_free(struct xl_live_ctl *ctl);
void xl_live_ctl_reset(struct xl_live_ctl *ctl);
int xl_live_request_stop(struct xl_live_ctl *ctl, uint32_t reason);
int xl_lock_ud(const uint8_t *p, size_t n, int mode);

int xl_ctx_init(struct xl_ctx *ctx);
int xl_ctx_open_capstone(struct xl_ctx *ctx);
void xl_ctx_close(struct xl_ctx *ctx);
void xl_ctx_reset_counts(struct xl_ctx *ctx);
int xl_decode_subset(const uint8_t *p, size_t n, int mode, struct xl_insn *out);
int xl_insn_length(const uint8_t *p, size_t n, int mode);
int xl_insn_length_slow(const uint8_t *p, size_t n, int mode);
struct xl_len_tables {
    uint64_t op[4][3][2][256];
    uint64_t op_rex[4][3][256];
    uint16_t ml[2][2048];
    uint8_t pfx[3][256];
    uint8_t grp[4][3][32][32];
};
void xl_len_derive(struct xl_len_tables *t);
const struct xl_len_tables *xl_len_tables_compiled(void);
int xl_replay(struct xl_ctx *ctx, int path, const struct xl_record *recs, size_t n,
              struct xl_result *results, struct xl_replay_stats *stats);
uint32_t xl_replay_one(struct xl_ctx *ctx, int path, const struct xl_record *rec, struct xl_result *res,
                       uint64_t *regs_out);
int xl_live_run(struct xl_ctx *ctx, void *uc, const struct xl_live_cfg *cfg, struct xl_live_result *out);
struct xl_sweep {
    uint64_t insns, bad, bytes, ns, wall_ns;
};
int xl_bench_sweep(int decoder, const uint8_t *buf, size_t n, int mode, struct xl_sweep *out);
int xl_bench_lengths_at(int decoder, const uint8_t *buf, size_t n, int mode, const uint32_t *offs, size_t k,
                        int8_t *out);
"""


# issue 15: the fuzzer core (fastpath/csrc/fuzzcore.c, helper `fuzzspeed`); appended, self-contained
SOURCES.append("fuzzcore.c")
FUZZ_INCLUDES = '#include "fuzzcore.h"\n'
CDEF += """
struct xl_fz_case {
    uint64_t regs[20];
    uint64_t xmm[16][2];
    uint64_t mmio_base, mmio_size, read_value;
    uint8_t code[15];
    uint8_t len;
    uint8_t mode;
    uint8_t gen;
    uint8_t n_xmm;
    uint8_t pad[5];
};
struct xl_fz_acc {
    uint64_t gpa, value;
    uint32_t size, write;
};
struct xl_fz_truth {
    uint64_t regs[18];
    uint64_t xmm[16][2];
    uint64_t next_rip;
    int32_t fault;
    int32_t fault_code;
    uint32_t n_acc;
    uint32_t pad;
    struct xl_fz_acc acc[64];
};
struct xl_fz_engine;
struct xl_fz_engine *xl_fz_open(int mode, uint64_t rip, uint64_t mmio_base, uint64_t mmio_size, int *err);
void xl_fz_close(struct xl_fz_engine *e);
int xl_fz_run(struct xl_fz_engine *e, const struct xl_fz_case *c, struct xl_fz_truth *t);
struct xl_fz_stats {
    uint64_t cases[4], ns[4], flagged[4], skipped[4];
    uint64_t outcomes[5][7];
    uint64_t mmio[4];
};
struct xl_fz_out {
    uint8_t suspect, skip, gen, touched;
};
struct xl_fz_batch;
struct xl_fz_batch *xl_fz_batch_new(void);
void xl_fz_batch_free(struct xl_fz_batch *b);
int xl_fz_batch_family(struct xl_fz_batch *b, const uint8_t *templates, size_t n);
int xl_fz_batch_run(struct xl_fz_batch *b, uint64_t seed, uint64_t start, size_t n, const uint8_t *gens,
                    size_t ngens, const struct xl_fz_case *corpus, size_t ncorpus, struct xl_fz_case *cases,
                    struct xl_fz_out *out, struct xl_fz_stats *st);
"""

# issue 12 item 3: the device table (fastpath/csrc/devtab.h) and the Python side of its callbacks
# (fastpath/devtab.py); appended, self-contained
CDEF += """
struct xl_region {
    uint64_t base, size;
};
typedef uint64_t (*xl_dev_fn)(void *opaque, uint32_t space, uint32_t op, uint64_t addr, uint32_t size,
                              uint64_t value);
typedef void (*xl_trace_fn)(void *opaque, uint32_t kind, uint64_t rip, uint64_t addr, uint32_t size,
                            uint64_t value);
struct xl_devtab {
    const struct xl_region *mmio;
    const struct xl_region *pio;
    const struct xl_region *pv;
    const struct xl_region *win;
    uint32_t nmmio, npio, npv, nwin;
    xl_dev_fn dev;
    void *dev_opaque;
    xl_trace_fn trace;
    void *trace_opaque;
};
extern "Python" uint64_t xl_py_dev(void *opaque, uint32_t space, uint32_t op, uint64_t addr, uint32_t size,
                                   uint64_t value);
extern "Python" void xl_py_trace(void *opaque, uint32_t kind, uint64_t rip, uint64_t addr, uint32_t size,
                                 uint64_t value);
"""


# issue 14, C side part 2 (helper cfam2): the stack, atomic, vector-move and misc families of the
# capstone path, and the one-exit state runner their agreement tests use; appended, self-contained
SOURCES += ["sem_route.c", "sem_stack.c", "sem_atomic.c", "sem_vector.c", "sem_misc.c", "semcheck.c"]
FUZZ_INCLUDES += '#include "semcheck.h"\n'
CDEF += """
struct xl_vecstate {
    uint64_t ymm[16][4];
    uint64_t mm[8];
    uint64_t cr0;
    uint32_t has;
    uint32_t pad;
};
uint32_t xl_sem_run(struct xl_ctx *ctx, int path, int mode, uint32_t kind, uint64_t addr, uint64_t *regs,
                    uint8_t *ram, uint64_t ram_base, uint64_t ram_size, struct xl_vecstate *vs,
                    struct xl_result *res);
"""

def _pkg_dir(mod: object) -> Path:
    return Path(os.path.dirname(mod.__file__))  # type: ignore[attr-defined]


def _source(name: str) -> str:
    """setuptools (pip, `setup.py build_ext`) wants paths relative to the project root, which is
    the working directory there; anything else (an ffibuilder.compile() elsewhere) gets absolute."""
    path = CSRC / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


SANITIZE_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
]


def _ffibuilder(sanitize: bool = False) -> FFI:
    uc_dir = _pkg_dir(unicorn)
    cs_dir = _pkg_dir(capstone)
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        "fastpath._exitlab_c",
        '#include "paths.h"\n#include "insn_subset.h"\n#include "replay.h"\n#include "live.h"\n'
        '#include "decoderbench.h"\n#include "insn_length.h"\n' + FUZZ_INCLUDES,
        sources=[str(CSRC / s) if sanitize else _source(s) for s in SOURCES],
        include_dirs=[str(CSRC), str(uc_dir / "include"), str(cs_dir / "include")],
        extra_compile_args=CFLAGS + (SANITIZE_FLAGS if sanitize else []),
        extra_link_args=SANITIZE_FLAGS if sanitize else [],
        extra_objects=[str(uc_dir / "lib" / "libunicorn.so.2"), str(cs_dir / "lib" / "libcapstone.so")],
    )
    return ffi


ffibuilder = _ffibuilder()

if __name__ == "__main__":
    import sys

    # `python fastpath/_build.py --sanitize DIR`: the ASan/UBSan build `make test-asan` loads into
    # CPython (with LD_PRELOAD of the sanitizer runtimes) to run the C-facing tests.
    if sys.argv[1:2] == ["--sanitize"]:
        print(_ffibuilder(sanitize=True).compile(tmpdir=sys.argv[2], verbose=False))
    else:
        ffibuilder.compile(tmpdir="build/cffi", verbose=True)
