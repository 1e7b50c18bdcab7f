"""`python -m adapter_stilts ...`: the same command line as run.py (how a sweep starts a cell's process)."""
import sys

from .cli import main

sys.exit(main())
