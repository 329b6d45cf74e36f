"""Run the ``fewlabels`` CLI with a fault planted: the process SIGKILLs itself at a chosen write.

    python tests/fault_inject.py MODE NAME N -- CLI ARGS...

MODE ``replace``: die at the Nth rename onto a file called NAME (the temp file is complete,
the rename never happens). MODE ``write``: at the Nth write into the temp file of NAME,
write half of the bytes, then die. MODE ``commit``: die inside the Nth transaction that
records a finished run in the study store (NAME is ignored), after its UPDATE, before
COMMIT. Used by tests/test_faults.py and benchmarks/bench_kill.py.
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def plant(mode: str, name: str, nth: int) -> None:
    seen = [0]

    def hit() -> bool:
        seen[0] += 1
        return seen[0] == nth

    if mode == "replace":
        real_replace = os.replace

        def replace(src, dst, *a, **kw):  # type: ignore[no-untyped-def]
            if os.path.basename(os.fspath(dst)) == name and hit():
                _die()
            return real_replace(src, dst, *a, **kw)

        os.replace = replace
    elif mode == "write":
        real_write = os.write

        def write(fd, data):  # type: ignore[no-untyped-def]
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if os.path.basename(target).startswith(f".{name}.tmp") and hit():
                real_write(fd, bytes(data[: max(1, len(data) // 2)]))
                _die()
            return real_write(fd, data)

        os.write = write
    elif mode == "commit":
        from fewlabels.study.store import Store

        real_finish = Store.finish

        def finish(self, key, worker, **kw):  # type: ignore[no-untyped-def]
            if hit():
                with self.tx() as c:
                    c.execute(
                        "UPDATE runs SET status = 'done', metrics = '{}' WHERE key = ?", (key,)
                    )
                    _die()
            return real_finish(self, key, worker, **kw)

        Store.finish = finish
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def main() -> None:
    mode, name, nth, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: fault_inject.py MODE NAME N -- CLI ARGS..."
    plant(mode, name, int(nth))
    from fewlabels.cli import main as cli_main

    sys.argv = ["fewlabels", *args]
    cli_main()


if __name__ == "__main__":
    main()
