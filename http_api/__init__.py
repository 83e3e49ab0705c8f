"""The REST server: ``python -m http_api``.

Pure modules (no aiohttp, no pykka): ``settings``, ``state``, ``validation``, ``recommender``.
The aiohttp application is ``app.init_app`` with its handlers in ``handlers``; ``metrics``
holds the Prometheus series. Nothing is re-exported here, so importing a pure module never
loads aiohttp or prometheus-client.
"""
