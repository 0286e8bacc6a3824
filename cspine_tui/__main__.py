import sys

from cspine_tui.cli import main

sys.exit(main())
