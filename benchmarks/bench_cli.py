"""Start-up of the command line: ``embedtasks --help`` vs the eager imports it had.

Measures, side by side in one run (fresh processes, rounds alternating, medians):

* ours: ``python -m embedtasks search --help`` (lazy: no pandas, scikit-learn,
  UMAP or ONNX Runtime is imported);
* reference: the same command after importing every estimator module, which is
  what ``import embedtasks`` did before the package became lazy.

Run: ``python benchmarks/bench_cli.py`` (``--rounds N``, default 5). Bar (issue
15): ours < 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

EAGER = (
    "import embedtasks.neighbors, embedtasks.cluster, embedtasks.classify, "
    "embedtasks.outliers, embedtasks.diversity, embedtasks.embedders._local, "
    "embedtasks.embedders._openai\n"
    "from embedtasks.cli import main\n"
    "try:\n    main(['search', '--help'])\nexcept SystemExit:\n    pass\n"
)


def _seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    ours_cmd = [sys.executable, "-m", "embedtasks", "search", "--help"]
    eager_cmd = [sys.executable, "-c", EAGER]
    _seconds(ours_cmd), _seconds(eager_cmd)  # warm the file cache
    ours, eager = [], []
    for _ in range(rounds):
        ours.append(_seconds(ours_cmd))
        eager.append(_seconds(eager_cmd))
    a, b = statistics.median(ours), statistics.median(eager)
    print(f"embedtasks search --help, median of {rounds} fresh processes:")
    print(f"  ours (lazy imports)        {a:6.2f} s")
    print(f"  reference (eager imports)  {b:6.2f} s")
    print(f"  ours / reference           {a / b:6.2f}  (bar: ours < 0.5 s)")


if __name__ == "__main__":
    main()
