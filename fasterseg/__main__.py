import sys

from fasterseg.cli import main

sys.exit(main())
