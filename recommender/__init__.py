"""The serving core: a loaded rule set (:class:`Snapshot`), its :class:`Recommender` index,
loading one from DATA_DIR, and the interface through which loads are reported.

Below both ``actors`` and ``http_api``: it imports neither, nor pykka, aiohttp or watchdog.
docs/recommender-design.md explains the index and proves its ranking exact.
"""
