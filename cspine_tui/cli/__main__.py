import sys

from cspine_tui.cli.main import main

sys.exit(main())
