import sys

from mfclr.cli import main

sys.exit(main())
