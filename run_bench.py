"""`python run_bench.py ...` is `tpme run ...`: the same entry point, for users without the console script."""
import sys

from tpme.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
