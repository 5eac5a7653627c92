"""Where an idle agent's resident memory goes: its mappings grouped by what they hold.

Starts one ``cpagent run`` with 2 simulated connectors against a loopback CSMS, as idle.py
does, waits for the accepted boot and a warm-up, and reads /proc/PID/smaps once. Each
mapping's Rss and Pss (shared pages counted by the share of each process mapping them) are
added up by group:

* file-backed: the interpreter (libpython), OpenSSL (libcrypto, libssl), SQLite, the C
  library (libc, libm, the loader), CPython's extension modules (``*.cpython-*.so``) and
  the other files (zlib, bz2, lzma, locale data, ...);
* anonymous: glibc's main heap (``[heap]``: malloc of blocks above pymalloc's 512 bytes,
  and what OpenSSL and SQLite allocate), thread stacks (anonymous mappings of exactly the
  stack size), the per-thread malloc arenas (anonymous mappings at 64 MiB-aligned
  addresses, glibc's ``HEAP_MAX_SIZE``), and the other anonymous mappings, which are
  mostly pymalloc's 1 MiB arenas (the kernel merges neighbours into one mapping, so they
  are not told apart from large malloc blocks and library ``.bss``);
* the main thread's ``[stack]`` and the rest.

The grouping reads no process internals beyond /proc, so it measures the agent as
installed; how the Python heap divides between modules is for tracemalloc, not for this.

    python benchmarks/memmap.py [--warmup 5] [--ocpp 1.6|2.0.1] [--json]

``--json`` adds one last line: {"mem_rss_mb": ..., "mem_pss_mb": ..., "mem_threads": ...,
and one "mem_<group>_rss_mb" per group}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from collections import Counter
from pathlib import Path

from benchconfig import add_ocpp_option, idle_agent

_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
_ARENA_ALIGN = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: per-thread arenas sit on it
FILE_GROUPS = (
    ("libpython", re.compile(r"/libpython3")),
    ("openssl", re.compile(r"/lib(crypto|ssl)\.so")),
    ("sqlite", re.compile(r"/libsqlite3\.so")),
    ("libc", re.compile(r"/(libc|libm|ld-linux[^/]*)\.so")),
    ("extension_modules", re.compile(r"\.cpython-[^/]*\.so$")),
)
GROUP_TITLES = {
    "libpython": "file: libpython (interpreter code and data)",
    "openssl": "file: OpenSSL libcrypto + libssl",
    "sqlite": "file: libsqlite3",
    "libc": "file: libc, libm, ld.so",
    "extension_modules": "file: CPython extension modules",
    "other_files": "file: other (zlib, bz2, lzma, locale, ...)",
    "heap": "anon: glibc main heap [heap]",
    "anon_other": "anon: pymalloc arenas, large blocks, .bss",
    "thread_stacks": "anon: thread stacks",
    "thread_arenas": "anon: per-thread malloc arenas",
    "main_stack": "anon: main thread [stack]",
    "other": "other",
}


def stack_size_kb() -> int:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    return 8192 if soft in (resource.RLIM_INFINITY, -1) else soft // 1024


def group_of(start: int, size_kb: int, name: str, stack_kb: int) -> str:
    """The group of one mapping (see the module's docstring)."""
    if name == "[heap]":
        return "heap"
    if name == "[stack]":
        return "main_stack"
    if name.startswith("["):
        return "other"
    if not name:
        if size_kb in (stack_kb, stack_kb + 4):
            return "thread_stacks"
        if start % _ARENA_ALIGN == 0:
            return "thread_arenas"
        return "anon_other"
    for group, pattern in FILE_GROUPS:
        if pattern.search(name):
            return group
    return "other_files"


def read_smaps(pid: int) -> tuple[Counter[str], Counter[str]]:
    """Rss and Pss in kB by group, from /proc/PID/smaps."""
    rss: Counter[str] = Counter()
    pss: Counter[str] = Counter()
    stack_kb = stack_size_kb()
    group = "other"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        match = _MAPPING.match(line)
        if match:
            start, end = int(match[1], 16), int(match[2], 16)
            group = group_of(start, (end - start) // 1024, match[4].strip(), stack_kb)
        elif line.startswith("Rss:"):
            rss[group] += int(line.split()[1])
        elif line.startswith("Pss:"):
            pss[group] += int(line.split()[1])
    return rss, pss


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after boot")
    add_ocpp_option(parser)
    parser.add_argument("--json", action="store_true", help="end with one line of JSON figures")
    args = parser.parse_args()

    async with idle_agent(args.ocpp, "MEM1", args.warmup) as agent:
        rss, pss = read_smaps(agent.proc.pid)
        threads = len(os.listdir(f"/proc/{agent.proc.pid}/task"))

    print(f"OCPP {args.ocpp} agent, {threads} thread(s), {args.warmup:g} s after boot")
    print(f"{'group':<46} {'RSS MB':>7} {'PSS MB':>7}")
    for group in sorted(GROUP_TITLES, key=lambda g: -rss[g]):
        if rss[group] or pss[group]:
            print(f"{GROUP_TITLES[group]:<46} {rss[group] / 1024:7.2f} {pss[group] / 1024:7.2f}")
    total_rss, total_pss = sum(rss.values()) / 1024, sum(pss.values()) / 1024
    print(f"{'total':<46} {total_rss:7.2f} {total_pss:7.2f}")
    if args.json:
        figures: dict[str, float] = {
            "mem_rss_mb": round(total_rss, 2),
            "mem_pss_mb": round(total_pss, 2),
            "mem_threads": threads,
        }
        figures |= {f"mem_{group}_rss_mb": round(rss[group] / 1024, 2) for group in GROUP_TITLES}
        print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
