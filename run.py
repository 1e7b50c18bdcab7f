"""Entry point: `deepspeed run.py --exp demo`, `python run.py --exp demo`, `python run.py tasks`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from adapter_stilts.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
