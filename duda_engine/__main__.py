import sys

from duda_engine.cli import main

sys.exit(main())
