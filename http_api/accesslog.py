"""The access log (``ACCESS_LOG=1``): one record per answered request, on the logger
``http_api.access``, in the format of every other log line (``LOG_FORMAT``).

The text line reads like a web server's, with the fields quoted as JSON strings so that nothing
a client sends can break a line; with ``LOG_FORMAT=json`` the same values are also separate
fields: ``remote``, ``method``, ``path`` (as sent, with the query), ``protocol``, ``status``,
``bytes`` (written, headers included), ``duration_seconds`` and ``user_agent``.
``duration_seconds`` runs from the request being parsed to the response being written, so it
includes what ``/metrics`` leaves out (writing the answer).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

ACCESS_LOGGER = "http_api.access"


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook writing one INFO record per request, with structured fields."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Record one answered request that took ``time`` seconds."""
        version = request.version
        protocol = f"HTTP/{version.major}.{version.minor}"
        user_agent = request.headers.get("User-Agent", "")
        fields = {
            "remote": request.remote or "",
            "method": request.method,
            "path": request.raw_path,
            "protocol": protocol,
            "status": response.status,
            "bytes": response.body_length,
            "duration_seconds": round(time, 6),
            "user_agent": user_agent,
        }
        self.logger.info(
            "%s %s %d %d %.6f s %s",
            fields["remote"] or "-",
            json.dumps(f"{request.method} {request.raw_path} {protocol}"),
            response.status,
            response.body_length,
            time,
            json.dumps(user_agent),
            extra=fields,
        )

    @property
    def enabled(self) -> bool:
        """False when the level filters INFO out: aiohttp then skips the call entirely."""
        return self.logger.isEnabledFor(logging.INFO)


def access_log_options(enabled: bool) -> dict[str, Any]:
    """The ``web.AppRunner`` keywords that turn the access log on, or off."""
    if not enabled:
        return {"access_log": None}
    return {"access_log": logging.getLogger(ACCESS_LOGGER), "access_log_class": AccessLogger}
