"""``python -m torchdata_s3ext``: the ``torchdata-s3ext`` command."""
import sys

from .tools.cli import main

sys.exit(main())
