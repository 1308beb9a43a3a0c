"""`python -m glassbox.journal ...`: see glassbox.journal.runner."""
import sys

from glassbox.journal.runner import main

sys.exit(main())
