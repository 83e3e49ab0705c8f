"""``python -m mining``: mine the dataset named by the environment into DATA_DIR.

Exit codes: 0 rules written or already up to date; 2 bad configuration; 3 bad
input data (also: over a size limit, or no rule found); 4 dataset not available
(missing file, download failed); 5 DATA_DIR not writable; 6 the memory budget would
be or was exceeded; 1 anything unexpected (a bug: the traceback is printed).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from mining.errors import EXPECTED_ERRORS
from mining.job import run_job
from mining.logsetup import configure_logging, log_format_for_errors, report_error
from mining.memory import DEFAULT_SHARE
from mining.settings import (
    DEFAULT_AUTO_FLOOR,
    DEFAULT_AUTO_MAX_RULES,
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_MAX_LEN,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_SUPPORT,
    Settings,
)
from mining.support import spec_text
from mining.version import version_line

USAGE = f"""usage: python -m mining [--help | --version]

Mines association rules from a playlists CSV into DATA_DIR. Configured only
through the environment (defaults in brackets):
  DATASET_URL          http(s)://, file:// URL or path [the bundled sample]
  DATA_DIR             where rules.cbor and the checkpoint go [./ml-data]
  MIN_SUPPORT          playlists an itemset must be in: a fraction (0 < x <= 1),
                       'N playlists', or 'auto' (the fewest the memory budget allows)
                       [{spec_text(DEFAULT_MIN_SUPPORT)}]
  MIN_CONFIDENCE       minimum rule confidence [{DEFAULT_MIN_CONFIDENCE}]
  MAX_LEN              most songs in an itemset (antecedent + consequent) [{DEFAULT_MAX_LEN}]
  MINING_ENGINE        pyfim, mlxtend or spark (same rules) [pyfim if installed,
                       else mlxtend]
  MINING_MEMORY_LIMIT  memory the job may hold, e.g. 2GiB, 512MiB, 1.5GB
                       [{round(DEFAULT_SHARE * 100)}% of physical, available or cgroup memory,
                       whichever is least]
  AUTO_SUPPORT_FLOOR   fewest playlists MIN_SUPPORT=auto may choose [{DEFAULT_AUTO_FLOOR}]
  AUTO_MAX_RULES       most rules MIN_SUPPORT=auto may keep [{DEFAULT_AUTO_MAX_RULES}]
  MINING_HEARTBEAT_SECONDS  a progress line this often in long phases
                       [{DEFAULT_HEARTBEAT_SECONDS:g}]
  MAX_DOWNLOAD_SIZE    largest http(s) dataset downloaded, e.g. 2GiB [512MiB]
  MAX_INPUT_SIZE       most CSV text read, after decompression [512MiB]
  ALLOW_EMPTY_RULES    1: commit a dataset that gives no rule at all [0]
  LOG_LEVEL            DEBUG, INFO, WARNING, ERROR or CRITICAL [INFO]
  LOG_FORMAT           text, or json for one JSON object per line [text]
With MINING_ENGINE=spark (docs/spark.md):
  SPARK_MASTER         local[*], local[N], spark://HOST:PORT, k8s://... [local[*], or
                       what spark-submit was given]
  SPARK_CONF           Spark settings, one spark.name=value per line
Exit codes: 0 done or up to date, 2 bad configuration, 3 bad input data (also:
over a size limit, no rule found), 4 dataset not available, 5 DATA_DIR not
writable, 6 over the memory budget (raise MIN_SUPPORT, lower MAX_LEN or raise
MINING_MEMORY_LIMIT), 1 unexpected error."""


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the job; return the process exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args:
        if args[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        if args[0] == "--version":
            print(version_line("mining"))
            return 0
        report_error(
            "mining",
            f"unexpected argument {args[0]!r} (see --help)",
            log_format_for_errors(os.environ if env is None else env),
        )
        return 2
    try:
        settings = Settings.from_env(env)
    except EXPECTED_ERRORS as exc:
        report_error("mining", str(exc), log_format_for_errors(os.environ if env is None else env))
        return exc.exit_code
    configure_logging(settings.log_format, settings.log_level)
    try:
        run_job(settings)
    except EXPECTED_ERRORS as exc:
        report_error("mining", str(exc), settings.log_format)
        return exc.exit_code
    except Exception:
        # A bug: the traceback goes to the log (one JSON field with LOG_FORMAT=json).
        logging.getLogger("mining").exception("unexpected error (a bug)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
