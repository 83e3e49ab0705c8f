"""``python -m mining``: mine the dataset named by the environment into DATA_DIR.

Exit codes: 0 rules written or already up to date; 2 bad configuration; 3 bad
input data (also: over a size limit, or no rule found); 4 dataset not available
(missing file, download failed); 5 DATA_DIR not writable; 1 anything unexpected
(a bug: the traceback is printed).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from mining.errors import MiningError
from mining.job import run_job
from mining.logsetup import configure_logging, log_format_for_errors, report_error
from mining.settings import Settings

USAGE = """usage: python -m mining

Mines association rules from a playlists CSV into DATA_DIR. Configured only
through the environment (defaults in brackets):
  DATASET_URL     http(s)://, file:// URL or path [the bundled sample]
  DATA_DIR        where rules.cbor and the checkpoint go [./ml-data]
  MIN_SUPPORT     fraction of playlists an itemset must be in [0.025]
  MIN_CONFIDENCE  minimum rule confidence [0.7]
  MAX_LEN         most songs in an itemset (antecedent + consequent) [8]
  MINING_ENGINE   mlxtend or pyfim [mlxtend]
  MAX_DOWNLOAD_SIZE  largest http(s) dataset downloaded, e.g. 2GiB [512MiB]
  MAX_INPUT_SIZE  most CSV text read, after decompression [512MiB]
  ALLOW_EMPTY_RULES  1: commit a dataset that gives no rule at all [0]
  LOG_LEVEL       DEBUG, INFO, WARNING, ERROR or CRITICAL [INFO]
  LOG_FORMAT      text, or json for one JSON object per line [text]
Exit codes: 0 done or up to date, 2 bad configuration, 3 bad input data (also:
over a size limit, no rule found), 4 dataset not available, 5 DATA_DIR not
writable, 1 unexpected error."""


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the job; return the process exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args:
        if args[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        report_error(
            "mining",
            f"unexpected argument {args[0]!r} (see --help)",
            log_format_for_errors(os.environ if env is None else env),
        )
        return 2
    try:
        settings = Settings.from_env(env)
    except MiningError as exc:
        report_error("mining", str(exc), log_format_for_errors(os.environ if env is None else env))
        return exc.exit_code
    configure_logging(settings.log_format, settings.log_level)
    try:
        run_job(settings)
    except MiningError as exc:
        report_error("mining", str(exc), settings.log_format)
        return exc.exit_code
    except Exception:
        # A bug: the traceback goes to the log (one JSON field with LOG_FORMAT=json).
        logging.getLogger("mining").exception("unexpected error (a bug)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
