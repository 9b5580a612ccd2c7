"""`python -m imagestream.cli`: the same as the `imagestream` command."""

import sys

from imagestream.cli.main import main

sys.exit(main())
