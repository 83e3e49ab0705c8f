"""``python -m http_api``: read the settings, bind the port, run the actors until SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from actors import Supervisor, bind_listener
from http_api.app import init_app
from http_api.settings import Settings, SettingsError

log = logging.getLogger("http_api")


def main() -> int:
    """Run the server; the exit status is 0 after a graceful stop."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"http_api: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        listener = bind_listener(settings.host, settings.port)
    except OSError as exc:
        print(
            f"http_api: error: cannot listen on HOST={settings.host} PORT={settings.port}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}",
            file=sys.stderr,
        )
        return 1
    supervisor = Supervisor(settings, listener, app_factory=init_app)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        supervisor.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    status = supervisor.run()
    log.info("exiting with status %d", status)
    return status


if __name__ == "__main__":
    sys.exit(main())
