"""The one place the package version lives (pyproject.toml reads it from here)."""

import os
import sys

__version__ = "0.1.0"
DISTRIBUTION = "playlist-recommender"


def version_line(module: str) -> str:
    """What ``--version`` prints: the command as it was run, the distribution, the version.

    The command is the console script's name (``playlist-recommender-serve``) or, when run as
    ``python -m module``, that.
    """
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    command = script if script.startswith(DISTRIBUTION) else f"python -m {module}"
    return f"{command} ({DISTRIBUTION}) {__version__}"
