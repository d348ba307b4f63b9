"""Stop the Unicorn engine in front of instructions it must not translate as it would (rule 9).

Unicorn 2.1.4 aborts the process while *translating* LOCK BT*/reg and has no pre-translation hook
(UC_HOOK_MEM_FETCH never fires for code). So the engine runs with a virtual TLB
(`UC_TLB_VIRTUAL`) whose fills come from `CodeGuard.on_tlb_fill` — an identity map over RAM, called
only on TLB misses — and keeps every RAM page W^X: a page fetched from is scanned
(emu/codeguard.py) and mapped read+exec; a write to a scanned page maps it read+write (no exec) and
forgets the scan, so code written at run time is scanned again before QEMU can translate it. Every
start of a guarded instruction is registered as a Unicorn *exit*: translation stops in front of it,
`emu_start` returns with RIP there, and the run loop judges it (emu/machine.py `_guard_stop`).

Host writes (a path storing to RAM through the host buffer) bypass Unicorn; `host_write` drops
the scan and the translated code of the pages they touch. Cost: nothing per instruction; a Python
call per TLB miss and per page transition (bench/bench_guard.py). Guard sites are kept to the forms
Unicorn gets wrong, because Unicorn invalidates the translated code at every exit address whenever
`emu_start` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unicorn import (
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_HOOK_TLB_FILL,
    UC_MEM_FETCH,
    UC_MEM_WRITE,
    UC_MEM_WRITE_UNMAPPED,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
    Uc,
)

from emu.codeguard import MAX_INSN_LEN
from emu.codeguard import scan as scan_guarded
from emu.platform import PAGE

_PERMS_CODE = UC_PROT_READ | UC_PROT_EXEC  # a scanned page: executable, not writable (W^X)
_PERMS_DATA = UC_PROT_READ | UC_PROT_WRITE  # written since its scan: no execution until rescanned


class CodeGuard:
    """The W^X page scan and the Unicorn exits it registers, for one engine.

    `on_code_written()` is called whenever a scanned page is written (by the guest or the host):
    the machine drops its per-address caches there, and notes the store for the budget."""

    def __init__(
        self,
        uc: Uc,
        read_ram: Callable[[int, int], bytes],
        ram_base: int,
        ram_size: int,
        mode: int,
        late_rip: bool,
        on_code_written: Callable[[], None],
        on_scan: Callable[[bytes, int], None] | None = None,
    ) -> None:
        self.uc = uc
        self.read_ram = read_ram
        self.ram_base, self.ram_size = ram_base, ram_size
        self.mode = mode
        self.late_rip = late_rip  # also guard the helper stores Unicorn reports at a later RIP
        self.on_code_written = on_code_written
        self.on_scan = on_scan  # sees every scanned span (data, address) before QEMU translates it
        self.clean: set[int] = set()  # pages scanned since their last write
        self.exits: set[int] = set()  # registered guard sites

    def install(self) -> None:
        """Virtual TLB + fill hook bounded to RAM (outside it Unicorn keeps its identity default, so
        device-window accesses cost no callback) + exits enabled. With exits enabled Unicorn ignores
        `emu_start`'s `until`: the engine then stops on its own only for HLT and at a guard site."""
        uc = self.uc
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)  # type: ignore[attr-defined]  # missing from the binding's stub
        ram_end = self.ram_base + self.ram_size - 1
        uc.hook_add(UC_HOOK_TLB_FILL, self.on_tlb_fill, None, self.ram_base, ram_end)
        uc.ctl_exits_enabled(True)
        uc.ctl_set_exits([])

    def on_tlb_fill(self, uc: Uc, vaddr: int, access: int, entry: Any, _ud: object) -> bool:
        page = vaddr & ~(PAGE - 1)
        entry.paddr = page
        if access == UC_MEM_FETCH:
            if page not in self.clean:
                self.scan_page(page)
        elif access in (UC_MEM_WRITE, UC_MEM_WRITE_UNMAPPED) and page in self.clean:
            self.clean.discard(page)
            self.on_code_written()
        entry.perms = _PERMS_CODE if page in self.clean else _PERMS_DATA
        return True

    def scan_page(self, page: int) -> None:
        lo = max(page - MAX_INSN_LEN, self.ram_base)  # an instruction may start just before the page
        data = self.read_ram(lo, page + PAGE + MAX_INSN_LEN - lo)
        found = scan_guarded(data, lo, self.mode, late_rip=self.late_rip) - self.exits
        if self.on_scan is not None:
            self.on_scan(data, lo)
        if found:
            self.exits |= found
            self.uc.ctl_set_exits(sorted(self.exits))
        self.clean.add(page)

    def host_write(self, addr: int, length: int) -> None:
        """The host wrote guest RAM behind Unicorn's back: forget the scan and the translated code."""
        if not length or not self.clean:
            return
        first, last = addr & ~(PAGE - 1), (addr + length - 1) & ~(PAGE - 1)
        hit = [p for p in range(first, last + PAGE, PAGE) if p in self.clean]
        if hit:
            self.clean.difference_update(hit)
            self.on_code_written()
            self.uc.ctl_remove_cache(addr, addr + length)
            self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def drop(self, rip: int) -> None:
        """The bytes at a site were rewritten since the scan: no site there any more."""
        self.exits.discard(rip)
        self.uc.ctl_set_exits(sorted(self.exits))
        self.uc.ctl_remove_cache(rip, rip + 1)

    def step_over(self, rip: int, after: int) -> None:
        """Let the instruction at the site `rip` run once, stopping at `after` (see `restore`)."""
        self.exits.discard(rip)
        self.uc.ctl_set_exits(sorted(self.exits | {after}))
        self.uc.ctl_remove_cache(rip, rip + 1)

    def restore(self, rip: int) -> None:
        """Undo `step_over`: the site is back, the block translated for the step is dropped."""
        self.exits.add(rip)
        self.uc.ctl_set_exits(sorted(self.exits))
        self.uc.ctl_remove_cache(rip, rip + 1)
