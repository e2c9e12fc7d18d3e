"""``python -m ibkr_flex_client``: the same as the ``ibkr-flex`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
