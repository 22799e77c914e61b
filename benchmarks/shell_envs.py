"""Shell sandboxes: start time, command rate and latency, memory per live sandbox, how many at once.

Per backend (``bwrap``, ``local``, and ``docker`` when its backend, dockerd and image are there):

* **start**: wall time from ``make_sandbox`` to a shell that answered (p50 over ``--starts``);
* **commands/s, p50/p99 latency**: ``--commands`` sequential ``echo $i`` commands in one live
  sandbox, each a full round trip (stdout, stderr and exit code collected);
* **memory per live sandbox**: the proportional set size (PSS, shared pages split fairly) of
  every process of ``--live`` started sandboxes, divided by their number (bwrap and local; for
  docker the containers' own cgroup usage is what ``docker stats`` shows, not measured here);
* **harness**: what the env does per episode outside the model's shell (median ms): a reset
  with a 20-file import and the first command, ``write_file`` + ``read_file``, the workspace
  digest, and ``run_isolated`` (how every catalog check runs);
* **concurrent**: ``--concurrent`` sandboxes started together (in waves of ``--wave``), each
  then asked ``echo $i`` at once; the row says how many answered correctly, the time it took,
  the memory they used together, and how many processes and cgroup directories were left
  after closing them all (must be 0).

For reference, the same ``echo`` commands run through plain ``subprocess.run(["bash", "-c",
...])`` with no sandbox, in the same run. Results: a table, and JSON in
``benchmarks/results/shell_envs.json``.

    python benchmarks/shell_envs.py                        # full run: 1,000 bwrap shells, 50 containers
    python benchmarks/shell_envs.py --concurrent 100 --docker-concurrent 10   # a quick run
    python benchmarks/shell_envs.py --backends bwrap       # bwrap only (1,000 live shells)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from toolgym.envs.shell import make_sandbox
from toolgym.envs.shell.cgroups import live_dirs
from toolgym.envs.shell.procs import descendants
from toolgym.envs.shell.runtime import run_sync

RESULTS = Path(__file__).parent / "results" / "shell_envs.json"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pss_of(pids: list[int]) -> int:
    """Summed PSS in bytes of ``pids`` (those gone are skipped)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def own_cgroups() -> list[Path]:
    """Sandbox cgroup directories of this process (other jobs on the host have their own)."""
    return [d for d in live_dirs() if d.name.startswith(f"{os.getpid()}-")]


def docker_reason() -> str | None:
    """Why docker rows are skipped, or None when they can run."""
    try:
        from toolgym.envs.shell.docker_backend import DEFAULT_IMAGE, docker_client

        docker_client().images.get(DEFAULT_IMAGE)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:100]}"
    return None


async def _start(backend: str) -> Any:
    return await make_sandbox(backend).start()


def measure_backend(backend: str, starts: int, commands: int, live: int) -> dict[str, Any]:
    """Start time, command rate/latency and memory per live sandbox for one backend."""
    start_s = []
    for _ in range(starts):
        t0 = time.perf_counter()
        sb = run_sync(_start(backend))
        start_s.append(time.perf_counter() - t0)
        run_sync(sb.close())
    sb = run_sync(_start(backend))
    latencies = []
    for i in range(commands):
        t0 = time.perf_counter()
        result = run_sync(sb.run(f"echo {i}"))
        latencies.append(time.perf_counter() - t0)
        if result.stdout != f"{i}\n":
            raise RuntimeError(f"{backend}: wrong output {result.stdout!r}")
    run_sync(sb.close())
    row: dict[str, Any] = {
        "backend": backend, "start_p50_ms": 1000 * statistics.median(start_s),
        "commands_per_s": commands / sum(latencies),
        "latency_p50_ms": 1000 * pct(latencies, 0.5), "latency_p99_ms": 1000 * pct(latencies, 0.99),
    }
    if backend != "docker":
        boxes = run_sync(_start_many(backend, live, wave=live))
        pids = [p for p, _, _ in descendants(os.getpid())]
        row["pss_per_sandbox_mb"] = pss_of(pids) / live / 2**20
        run_sync(_close_many(boxes))
    return row


async def _start_many(backend: str, n: int, wave: int) -> list[Any]:
    boxes: list[Any] = []
    for first in range(0, n, wave):
        boxes += await asyncio.gather(*(_start(backend) for _ in range(first, min(n, first + wave))))
    return boxes


async def _close_many(boxes: list[Any]) -> None:
    await asyncio.gather(*(b.close() for b in boxes))


async def _ask_all(boxes: list[Any]) -> int:
    outs = await asyncio.gather(*(b.run(f"echo {i}") for i, b in enumerate(boxes)))
    return sum(o.stdout == f"{i}\n" for i, o in enumerate(outs))


def measure_concurrent(backend: str, n: int, wave: int) -> dict[str, Any]:
    """Start ``n`` sandboxes, ask each a command at once, close them, count what is left."""
    before_cg = len(own_cgroups())
    t0 = time.perf_counter()
    boxes = run_sync(_start_many(backend, n, wave))
    started_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    answered = run_sync(_ask_all(boxes))
    ask_s = time.perf_counter() - t1
    pids = [p for p, _, _ in descendants(os.getpid())]
    pss = pss_of(pids) if backend != "docker" else 0
    run_sync(_close_many(boxes))
    time.sleep(0.2)
    return {
        "backend": backend, "live": n, "answered": answered, "start_all_s": started_s, "ask_all_s": ask_s,
        "pss_total_mb": pss / 2**20, "processes_left": len(descendants(os.getpid())),
        "cgroups_left": len(own_cgroups()) - before_cg,
    }


def measure_harness(backend: str, repeats: int) -> dict[str, Any]:
    """Median ms of what the harness does per episode, outside the model's shell."""
    from toolgym.envs.shell.sandbox import tar_of_files

    sb = run_sync(_start(backend))
    files = tar_of_files({f"f{i}.txt": "x" * 100 for i in range(20)})

    def median_ms(fn: Any, n: int = repeats) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times)

    row = {
        "backend": backend,
        "reset_import_ms": median_ms(lambda: (sb.sync.reset_to(files), sb.sync.run("true"))),  # what ShellEnv.reset does
        "write_read_ms": median_ms(lambda: (sb.sync.write_file("a.txt", "hello"), sb.sync.read_file("a.txt"))),
        "digest_ms": median_ms(sb.sync.workspace_digest),
        "run_isolated_ms": median_ms(lambda: sb.sync.run_isolated("true"), max(3, repeats // 3)),
    }
    run_sync(sb.close())
    return row


def measure_subprocess(commands: int) -> dict[str, Any]:
    """The reference: each command in a fresh ``bash -c`` through ``subprocess.run``, no sandbox."""
    latencies = []
    for i in range(commands):
        t0 = time.perf_counter()
        out = subprocess.run(["bash", "-c", f"echo {i}"], capture_output=True, text=True, check=True).stdout
        latencies.append(time.perf_counter() - t0)
        if out != f"{i}\n":
            raise RuntimeError("subprocess reference gave wrong output")
    return {
        "backend": "subprocess (no sandbox)", "start_p50_ms": None, "commands_per_s": commands / sum(latencies),
        "latency_p50_ms": 1000 * pct(latencies, 0.5), "latency_p99_ms": 1000 * pct(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--live", type=int, default=50, help="sandboxes for the memory-per-sandbox figure")
    parser.add_argument("--concurrent", type=int, default=1000, help="bwrap sandboxes live at once")
    parser.add_argument("--docker-concurrent", type=int, default=50)
    parser.add_argument("--wave", type=int, default=50, help="sandboxes started together")
    parser.add_argument("--backends", nargs="*", default=["bwrap", "local", "docker"], help="which backends to measure")
    parser.add_argument("--harness-repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 3 pipes per live sandbox
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    warnings.simplefilter("ignore", RuntimeWarning)  # the local backend's loud warning, once per start
    logging.getLogger("toolgym.envs.shell.local_backend").setLevel(logging.ERROR)

    rows = [measure_backend(b, args.starts, args.commands, args.live) for b in ("bwrap", "local") if b in args.backends]
    skip = docker_reason() if "docker" in args.backends else "not asked for (--backends)"
    if skip is None:
        rows.append(measure_backend("docker", max(3, args.starts // 4), args.commands, 0))
    rows.append(measure_subprocess(args.commands))
    harness = [measure_harness(b, args.harness_repeats) for b in ("bwrap", "local") if b in args.backends]
    if skip is None:
        harness.append(measure_harness("docker", max(3, args.harness_repeats // 3)))
    concurrent = [measure_concurrent("bwrap", args.concurrent, args.wave)] if "bwrap" in args.backends else []
    if skip is None:
        concurrent.append(measure_concurrent("docker", args.docker_concurrent, 10))

    console = Console()
    table = Table(title="shell sandboxes: one command round trip (echo) and start-up")
    for col in ("backend", "start p50 ms", "commands/s", "p50 ms", "p99 ms", "PSS/sandbox MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["backend"], _f(r.get("start_p50_ms")), _f(r["commands_per_s"], 0), _f(r["latency_p50_ms"], 2),
                      _f(r["latency_p99_ms"], 2), _f(r.get("pss_per_sandbox_mb"), 2))
    console.print(table)
    tools = Table(title="harness per episode, outside the model's shell (median ms)")
    for col in ("backend", "reset+import+1st cmd", "write+read file", "digest", "run_isolated (a check)"):
        tools.add_column(col, justify="right")
    for r in harness:
        tools.add_row(r["backend"], _f(r["reset_import_ms"], 1), _f(r["write_read_ms"], 2), _f(r["digest_ms"], 2), _f(r["run_isolated_ms"], 1))
    console.print(tools)
    conc = Table(title="sandboxes live at once")
    for col in ("backend", "live", "answered", "start all s", "ask all s", "PSS total MB", "procs left", "cgroups left"):
        conc.add_column(col, justify="right")
    for r in concurrent:
        conc.add_row(r["backend"], str(r["live"]), str(r["answered"]), _f(r["start_all_s"], 1), _f(r["ask_all_s"], 2),
                     _f(r["pss_total_mb"], 0), str(r["processes_left"]), str(r["cgroups_left"]))
    console.print(conc)
    if skip is not None:
        console.print(f"docker rows skipped: {skip}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_avg": os.getloadavg(), "backends": rows, "harness": harness, "concurrent": concurrent, "docker_skipped": skip,
    }, indent=2) + "\n")
    console.print(f"wrote {args.out}")


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


if __name__ == "__main__":
    main()
