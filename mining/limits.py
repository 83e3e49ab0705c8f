"""The limits of a recommendation request, defined once for the server and the recommender.

Plain constants (no imports), in the bottom layer so that every package may read them: the
server validates requests against them, the recommender sizes its per-rule-set caches by them.
"""

# Songs returned when a request names no ``limit``, and the most it may ask for.
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# The longest track name in the course datasets is 141 characters; 1,000 leaves room for long
# classical titles while keeping a capped query (DEFAULT_MAX_QUERY_SONGS songs) within the
# default body limit.
MAX_SONG_NAME_CHARS = 1000
# The defaults of the server's MAX_QUERY_SONGS (distinct songs in one request) and
# MAX_BODY_BYTES (larger request bodies get 413), and the ranges it accepts for them.
DEFAULT_MAX_QUERY_SONGS = 1000
MAX_QUERY_SONGS_RANGE = (1, 100_000)
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_BODY_BYTES_RANGE = (1024, 1 << 30)
# At most this many of a query's unknown songs are reported back in ``unknown``.
UNKNOWN_LIST_LIMIT = 20
