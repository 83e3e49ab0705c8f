"""The ML job: playlists CSV → association rules (``python -m mining``)."""
