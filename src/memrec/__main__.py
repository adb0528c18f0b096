"""``python -m memrec``: the command line (also what ``torchrun -m memrec`` runs)."""
import sys

from memrec.cli import main

sys.exit(main())
