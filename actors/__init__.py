"""The actor system behind ``python -m http_api``: watcher → rule server → HTTP frontend.

:class:`RulesWatcher` tells the :class:`RuleServer` to check DATA_DIR; the RuleServer loads new
rules and pushes snapshots to the :class:`HttpFrontend`, which serves them from its own event
loop; the :class:`Supervisor` starts, restarts and stops them. DESIGN.md §3 has the why.
"""

from actors.frontend import HttpFrontend, LoopGate
from actors.rule_server import RuleServer
from actors.supervisor import Supervisor, SupervisorError, bind_listener
from actors.watcher import RulesWatcher

__all__ = [
    "HttpFrontend",
    "LoopGate",
    "RuleServer",
    "RulesWatcher",
    "Supervisor",
    "SupervisorError",
    "bind_listener",
]
