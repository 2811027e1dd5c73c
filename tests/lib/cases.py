"""The runner the Python suites share: run each `case_*` function (a
coroutine or a plain one), report each, remove the cases' temporary
directories when all passed, exit non-zero on any failure."""

import argparse
import asyncio
import os
import shutil
import sys
import time
import traceback


def run(cases, dirs, suite, only=""):
    failed = []
    chosen = [c for c in cases if only in c.__name__]
    for case in chosen:
        start = time.monotonic()
        try:
            if asyncio.iscoroutinefunction(case):
                asyncio.run(asyncio.wait_for(case(), timeout=400))
            else:
                case()
            print(f"ok    {case.__name__} ({time.monotonic() - start:.1f}s)", flush=True)
        except BaseException as e:  # noqa: BLE001 - report every case
            # The MCP SDK wraps a case's own failure in task-group exceptions.
            while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                e = e.exceptions[0]
            failed.append(case.__name__)
            print(f"FAIL  {case.__name__}: {e!r}", flush=True)
            traceback.print_exception(e)
    print(f"{suite}: {len(chosen) - len(failed)} of {len(chosen)} cases passed")
    if not failed:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    sys.exit(1 if failed else 0)


def main(module_globals, dirs, suite):
    """The suites' command line: `-k SUBSTRING` picks cases, `--wasmflow
    PATH` the binary (the module's WASMFLOW)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="")
    ap.add_argument("--wasmflow", default=module_globals["WASMFLOW"])
    opts = ap.parse_args()
    module_globals["WASMFLOW"] = os.path.abspath(opts.wasmflow)
    cases = [v for k, v in sorted(module_globals.items()) if k.startswith("case_")]
    run(cases, dirs, suite, opts.k)
