import sys

from cineamate.cli.main import main

sys.exit(main())
