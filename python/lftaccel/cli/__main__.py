"""python -m lftaccel.cli"""

import sys

from . import main

sys.exit(main())
