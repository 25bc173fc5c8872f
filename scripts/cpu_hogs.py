"""Keep N CPUs busy while a command runs, then stop: ``cpu_hogs.py N SECONDS -- CMD ARGS...``.

Used by ``nox -s busy`` to run the test suite the way a shared CI machine runs it: two busy loops
(unpinned, so the kernel spreads them) compete with the tests for the CPUs. Each hog also stops on
its own after SECONDS, so a killed parent never leaves one spinning. Exits with the command's code.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("usage: cpu_hogs.py N SECONDS -- CMD [ARGS...]\n")
        return 2
    count, seconds, cmd = int(argv[0]), float(argv[1]), argv[3:]
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG.format(seconds=seconds)]) for _ in range(count)
    ]
    sys.stderr.write(
        f"cpu_hogs: {count} busy loops (pids {[h.pid for h in hogs]}), <= {seconds:.0f}s\n"
    )
    start = time.monotonic()
    try:
        return subprocess.call(cmd)
    finally:
        for hog in hogs:
            if hog.poll() is None:
                hog.send_signal(signal.SIGKILL)
            hog.wait()
        alive = [h.pid for h in hogs if h.returncode is None]
        sys.stderr.write(
            f"cpu_hogs: stopped after {time.monotonic() - start:.0f}s"
            f"{'' if not alive else f' (still alive: {alive})'}\n"
        )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
