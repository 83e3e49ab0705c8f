"""Playlist CSV files every reader must read alike (mining.reader with pyarrow, and Spark)."""

from __future__ import annotations

import gzip
import lzma

# The real files' header; names with commas, quotes and a line break, quoted per RFC 4180.
REAL_SHAPE = (
    "track_uri,album_name,album_uri,artist_name,artist_uri,duration_ms,pid,track_name\n"
    'u1,"Live, Loud",a1,"Tyler, The Creator",r1,1000,7,"Tyler, The Creator"\n'
    'u2,Album,a2,Artist,r2,2000,7,"City Of Stars - From ""La La Land"""\n'
    'u3,Album,a3,Artist,r3,3000,7,"two\nlines"\n'
    'u1,"Live, Loud",a1,"Tyler, The Creator",r1,1000,8,"Tyler, The Creator"\n'
    "u4,Album,a4,Artist,r4,4000,8,plain\n"
    'u1,"Live, Loud",a1,"Tyler, The Creator",r1,1000,8,"Tyler, The Creator"\n'
)
# The course samples' header: the columns in other positions, and a `name` column.
COURSE_SHAPE = (
    "pid,name,album_name,artist_name,duration_ms,track_name\n"
    '7,x,"Live, Loud","Tyler, The Creator",1000,"Tyler, The Creator"\n'
    '7,x,Album,Artist,2000,"City Of Stars - From ""La La Land"""\n'
    '7,x,Album,Artist,3000,"two\nlines"\n'
    '8,x,"Live, Loud","Tyler, The Creator",1000,"Tyler, The Creator"\n'
    "8,x,Album,Artist,4000,plain\n"
)
# The distinct songs of the two playlists both shapes hold.
EXPECTED = [
    {"Tyler, The Creator", 'City Of Stars - From "La La Land"', "two\nlines"},
    {"Tyler, The Creator", "plain"},
]
# Rows with an empty or blank pid or track_name are skipped (4 of 8); pid is text.
SKIPPED_ROWS = (
    'pid,track_name,artist_name\n1,a,x\n,b,x\n2,,x\n3,"   ",x\n  ,c,x\n2,a,x\nabc,d,x\n0012,d,x\n'
)

# Files no reader accepts: (test id, content, a part of the one-line message each must give).
BAD_INPUTS = [
    ("empty", b"", "the file is empty"),
    ("empty-gzip", gzip.compress(b""), "the file is empty"),
    ("header-only", b"pid,track_name\n", "no rows with both a pid and a track_name"),
    (
        "only-blank-rows",
        b"pid,track_name\n,\n , \n",
        "no rows with both a pid and a track_name (2 data rows)",
    ),
    ("no-track-column", b"pid,artist_name\n1,x\n", "no 'track_name' column"),
    ("no-columns", b"playlist,song\n1,x\n", "no 'pid' and no 'track_name' column"),
    ("semicolons", b"track_name;pid\nx;1\n", "no 'pid' and no 'track_name' column"),
    ("binary", bytes(range(256)) * 64, "not a CSV text file (binary content)"),
    (
        "gzip-of-binary",
        gzip.compress(bytes(range(256)) * 64),
        "not a CSV text file (binary content)",
    ),
    (
        "latin-1",
        "pid,track_name\n1,Beyoncé\n".encode("latin-1"),
        "not a CSV text file (not UTF-8)",
    ),
    ("corrupt-gzip", b"\x1f\x8b\x08\x00garbage that is no deflate stream", "not readable as CSV"),
    (
        "truncated-xz",
        lzma.compress(b"pid,track_name\n1,a\n" * 100)[:40],
        "not readable as CSV",
    ),
    ("ragged-row", b"pid,track_name\n1,a\n2,b,extra\n", "not readable as CSV"),
]
