"""`python -m tpme.cli` is the `tpme` command."""
import sys

from tpme.cli import main

sys.exit(main())
