import sys

from ngfw.cli import main

sys.exit(main())
