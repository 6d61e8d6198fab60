"""`python -m humanlike_tui` (also what `accelerate launch -m humanlike_tui` runs)."""

import sys

from humanlike_tui.cli import main

if __name__ == "__main__":
    sys.exit(main())
