import sys

from lapcast.cli import main

sys.exit(main())
