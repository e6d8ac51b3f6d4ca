"""Time training steps and student inference: the same as ``python -m duda_engine bench``.

    python bench/run_bench.py --device cuda --json bench/results/h100.json
    python bench/run_bench.py --device cpu --height 128 --width 128 --iterations 10 --methods source_only_b0
    python bench/run_bench.py --inference

Options: ``python bench/run_bench.py --help``; what is measured and how: docs/BENCHMARKS.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.speed.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
