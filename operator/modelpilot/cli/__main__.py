import sys

from modelpilot.cli import main

sys.exit(main())
