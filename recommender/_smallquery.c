/*
 * The compiled small-query path of the recommender (recommender/compiled.py; the design in
 * docs/recommender-design.md and docs/ranking.md).
 *
 * SmallQueryIndex answers a query of a few known songs exactly as
 * recommender.query.SmallQueryPath does in Python, over the same numpy arrays: the
 * hashes of the query's subsets, a lookup of each in an open-addressing table
 * of antecedent hashes (built here once per rule set), a check of each hit
 * against the antecedent's songs, then one of the two rankings:
 * - best: the first `limit + |Q|` keys of each run found, sorted best first,
 *   consequents read off the keys, Q and repeats skipped;
 * - sum: every rule of every run found adds its fixed-point confidence to its
 *   consequent's sum (and keeps the consequent's best key, the tie-break): in an
 *   array over song ids that the index keeps from query to query (stamped per
 *   query, so it is never cleared), or past DENSE_SONGS songs in a small hash
 *   table of this query's own, sized to the rules read (on the stack up to 512
 *   candidates); a heap of `limit` entries keeps the best (sum, key) pairs;
 * then the most popular songs. The Python path is the reference and the tests
 * compare the two on random rule sets.
 *
 * Why C: in the server a request runs between aiohttp's own code, so every
 * interpreted step of the Python path pays for cold caches; compiled, a
 * recommendation takes a third of the server CPU or less
 * (benchmarks/serve_throughput.py --split; benchmarks/recommend.py times both
 * paths side by side).
 *
 * The index keeps a buffer view of each array it reads (numpy arrays marked
 * read-only by the recommender), so it never copies them and never sees them
 * change. Queries only read them; besides their own memory they write only the
 * sum ranking's array, while holding the GIL (answer() never releases it), so
 * one index serves any number of threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A query enumerates its 2^|Q| subsets: this bounds the work and the memory (the recommender
 * sends at most FEW_QUERY_SONGS, 8; the server's MAX_QUERY_SONGS setting bounds whole queries,
 * which larger ones take the scan for). */
#define MAX_SUBSET_SONGS 16
/* Subset hashes, pools and "already listed" sets up to these sizes live on the stack. */
#define STACK_SUBSETS 256
#define STACK_POOL 1024
#define STACK_SET 512
#define STACK_HEAP 128
#define STACK_TALLY_SLOTS 1024
/* Up to this many songs (by default; `dense_songs` lowers it) the sum ranking tallies into an
 * array indexed by song id (20 bytes a song, 5 MiB at most) instead of a hash table: no
 * hashing, no probing, nothing to clear per query (benchmarks/recommend.py times the sum
 * ranking). */
#define DENSE_SONGS (1 << 18)
/* The dense tally asks for the slot of the consequent this many rules ahead: the slots are
 * scattered and, in the server, out of the caches; fetched early they are there when needed
 * (benchmarks/recommend.py times the sum ranking). */
#define PREFETCH_AHEAD 16
/* The dense sum ranking reads this many rules of each run before it first checks whether it can
 * stop early (then twice as many, and so on; see dense_sum_ranking). */
#define SUM_DEPTH 32
/* A run of at least n_songs / BITMAP_SHARE rules keeps a bitmap of its consequents (with
 * `bitmap_share`, by default this, 0: none): the early stop completes its contenders' sums from
 * it, word by word, instead of testing each rule (benchmarks/recommend.py). Per rule of such a
 * run, its bitmap costs at most BITMAP_SHARE / 8 bytes, its ranks BITMAP_SHARE / 16, and its
 * copy of the run's keys and weights 12. */
#define BITMAP_SHARE 16
#define EMPTY_SLOT (-1)
/* Marks a query song's tally in the sum ranking: never a candidate. No key is this large
 * (the index refuses one). */
#define EXCLUDED UINT64_MAX
/* An empty slot of the sum ranking's table: no song has this id (at most 2^32 - 1 songs). */
#define NO_SONG UINT32_MAX

/* What the sum ranking gathers for one song. */
typedef struct {
    uint64_t sum;  /* the sum of the fixed-point confidences of its rules that fired */
    uint64_t best; /* the best key among them (EXCLUDED: a query song) */
} Tally;

/* One query's tallies: open addressing over song ids, at most half full. */
typedef struct {
    Tally *tallies;    /* per slot, valid once the slot has a song */
    uint32_t *songs;   /* per slot: its song, or NO_SONG */
    uint32_t *claimed; /* the slots taken, in the order they were taken */
    Py_ssize_t n_claimed;
    int shift; /* 64 - log2(slots): a song's first slot is the top bits of its hash */
    uint64_t mask;
} TallyTable;

typedef struct {
    PyObject_HEAD
    Py_buffer codes;     /* uint64 per song: its code, 0 for a song in no antecedent */
    Py_buffer starts;    /* int64 per antecedent + 1: its run of keys starts here */
    Py_buffer rows;      /* unsigned song ids, `width` per antecedent, padded with n_songs */
    Py_buffer keys;      /* uint64 per rule: the ranking key (see the recommender) */
    Py_buffer consequents; /* unsigned song id per rule, in the order of `keys` */
    Py_buffer weights;   /* uint32 per rule: its confidence in fixed point (the sum ranking) */
    Py_buffer tie_songs; /* int64 per song: the song named by key % n_songs */
    Py_buffer popular;   /* int64 per song: song ids by popularity */
    Py_ssize_t n_songs;
    Py_ssize_t n_groups;
    Py_ssize_t width;
    Py_ssize_t n_keys;
    /* Open addressing, linear probing, at most half full: hash -> antecedent. */
    uint64_t *table_hashes;
    int64_t *table_groups;
    uint64_t table_mask;
    /* The sum ranking's tallies indexed by song id, allocated at the first summed query when
     * there are at most DENSE_SONGS songs; reused by every query (under the GIL, which
     * answer() never releases: `scratch_busy` guards against reentry all the same). A slot
     * is live when its stamp is the current query's, so nothing is cleared between queries. */
    Tally *scratch;
    uint32_t *scratch_stamps;
    uint32_t *scratch_claimed;
    uint64_t *scratch_marks; /* one bit per song: the contenders of the early stop, else 0 */
    uint32_t stamp;
    int scratch_busy;
    Py_ssize_t sum_depth; /* rules of each run read before the first early-stop check; 0: none */
    /* The long runs' bitmaps (see BITMAP_SHARE), built with the index: per antecedent the index
     * of its bitmap or -1; per bitmap `n_words` words of consequent bits, the set bits before
     * each word, and where its rules start in `bitmap_keys` and `bitmap_weights`, which hold
     * each rule's key and weight in the order of the consequents' ids (so a query reads the
     * rules of its contenders in one pass over its runs' copies, not scattered over the
     * index's arrays). */
    Py_ssize_t bitmap_share;
    Py_ssize_t n_words;
    Py_ssize_t n_bitmaps;
    int64_t *bitmap_of;
    uint64_t *bitmaps;
    uint32_t *bitmap_ranks;
    int64_t *bitmap_rules_start;
    uint64_t *bitmap_keys;
    uint32_t *bitmap_weights;
    Py_ssize_t dense_songs; /* the scratch is used up to this many songs (<= DENSE_SONGS) */
    /* For answer_json (NULL: not given): a dict of each song's exact name to its id, and a
     * tuple of each song's name as a JSON string (bytes). Neither can refer back to the
     * index, so the index needs no part in the garbage collector. */
    PyObject *song_ids;
    PyObject *json_names;
} SmallQueryIndex;

/* A native-order, C-contiguous, one-dimensional view of `array` whose items are one of the
 * struct codes in `kinds` ("BHILQ": unsigned, "lq": signed 64-bit), `itemsize` bytes each
 * (0: any of those); `type` names that for the error. */
static int
take_buffer(PyObject *array, Py_buffer *view, const char *kinds, Py_ssize_t itemsize,
            const char *what, const char *type)
{
    if (PyObject_GetBuffer(array, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    const char *format = view->format == NULL ? "B" : view->format;
    if (*format == '@' || *format == '=') {
        format++;
    }
    if (view->ndim != 1 || strlen(format) != 1 || strchr(kinds, *format) == NULL ||
        (itemsize != 0 && view->itemsize != itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s must be a one-dimensional array of %s", what, type);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Item `at` of an array of unsigned song ids of any width. */
static inline uint64_t
song_at(const Py_buffer *songs, Py_ssize_t at)
{
    const char *base = (const char *)songs->buf;
    switch (songs->itemsize) {
    case 1:
        return ((const uint8_t *)base)[at];
    case 2:
        return ((const uint16_t *)base)[at];
    case 4:
        return ((const uint32_t *)base)[at];
    default:
        return ((const uint64_t *)base)[at];
    }
}

static inline int64_t
find_group(const SmallQueryIndex *self, uint64_t hash)
{
    uint64_t slot = hash & self->table_mask;
    for (;;) {
        int64_t group = self->table_groups[slot];
        if (group == EMPTY_SLOT || self->table_hashes[slot] == hash) {
            return group;
        }
        slot = (slot + 1) & self->table_mask;
    }
}

/* A set of song ids (at most half full), for "in Q or already listed". */
typedef struct {
    int64_t *slots;
    uint64_t mask;
} SongSet;

static inline uint64_t
song_slot(const SongSet *set, int64_t song)
{
    /* Fibonacci hashing: consecutive ids land far apart. */
    return ((uint64_t)song * 0x9E3779B97F4A7C15ULL >> 17) & set->mask;
}

static inline int
song_set_add(SongSet *set, int64_t song)
{
    uint64_t slot = song_slot(set, song);
    while (set->slots[slot] != EMPTY_SLOT) {
        if (set->slots[slot] == song) {
            return 0;
        }
        slot = (slot + 1) & set->mask;
    }
    set->slots[slot] = song;
    return 1;
}

static inline int
song_set_has(const SongSet *set, int64_t song)
{
    uint64_t slot = song_slot(set, song);
    while (set->slots[slot] != EMPTY_SLOT) {
        if (set->slots[slot] == song) {
            return 1;
        }
        slot = (slot + 1) & set->mask;
    }
    return 0;
}

static int
compare_keys_descending(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* Check that every index into the arrays stays inside them, then fill the hash table
 * (allocated by the caller). Returns what is wrong, or NULL. Needs no GIL. */
static const char *
check_and_fill_table(SmallQueryIndex *self, const uint64_t *group_hashes)
{
    const int64_t *run_starts = (const int64_t *)self->starts.buf;
    for (Py_ssize_t g = 0; g < self->n_groups; g++) {
        if (run_starts[g] < 0 || run_starts[g] > run_starts[g + 1] ||
            run_starts[g + 1] > self->n_keys) {
            return "group_starts is not a partition of the keys";
        }
    }
    for (Py_ssize_t i = 0; i < self->n_groups * self->width; i++) {
        if (song_at(&self->rows, i) > (uint64_t)self->n_songs) {
            return "group_rows names a song that does not exist";
        }
    }
    const uint64_t *keys = (const uint64_t *)self->keys.buf;
    for (Py_ssize_t k = 0; k < self->n_keys; k++) {
        if (song_at(&self->consequents, k) >= (uint64_t)self->n_songs) {
            return "consequents names a song that does not exist";
        }
        if (keys[k] == EXCLUDED) {
            return "a key is 2**64 - 1, which marks a query song";
        }
    }
    const int64_t *ties = (const int64_t *)self->tie_songs.buf;
    const int64_t *ranked = (const int64_t *)self->popular.buf;
    for (Py_ssize_t s = 0; s < self->n_songs; s++) {
        if (ties[s] < 0 || ties[s] >= self->n_songs || ranked[s] < 0 ||
            ranked[s] >= self->n_songs) {
            return "tie_songs or popular names a song that does not exist";
        }
    }
    for (uint64_t slot = 0; slot <= self->table_mask; slot++) {
        self->table_groups[slot] = EMPTY_SLOT;
    }
    for (Py_ssize_t g = 0; g < self->n_groups; g++) {
        uint64_t slot = group_hashes[g] & self->table_mask;
        while (self->table_groups[slot] != EMPTY_SLOT) {
            if (self->table_hashes[slot] == group_hashes[g]) {
                return "two antecedents share a hash";
            }
            slot = (slot + 1) & self->table_mask;
        }
        self->table_hashes[slot] = group_hashes[g];
        self->table_groups[slot] = g;
    }
    return NULL;
}

/* The set bits of `word` below `bit`: a POPCNT instruction where the processor has one. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
#endif
static inline uint32_t
bits_below(uint64_t word, int bit)
{
    return (uint32_t)__builtin_popcountll(word & (((uint64_t)1 << bit) - 1));
}

/* Whether bits_below() may run: always, but on x86-64 only with POPCNT (without it, no run
 * gets a bitmap and the early stop tests each rule). */
static int
popcount_supported(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt");
#else
    return 1;
#endif
}

static const char OUT_OF_MEMORY[] = "out of memory";

/* Build the long runs' bitmaps (see BITMAP_SHARE). Returns what is wrong, or NULL. Needs no
 * GIL. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
#endif
static const char *
build_run_bitmaps(SmallQueryIndex *self)
{
    const int64_t *starts = (const int64_t *)self->starts.buf;
    const uint64_t *keys = (const uint64_t *)self->keys.buf;
    const uint32_t *weights = (const uint32_t *)self->weights.buf;
    Py_ssize_t n_bitmaps = 0, n_rules = 0;
    self->n_words = self->n_songs / 64 + 1;
    if (self->bitmap_share == 0) {
        return NULL;
    }
    /* length * bitmap_share >= n_songs, without overflow. */
    int64_t shortest = (self->n_songs + self->bitmap_share - 1) / self->bitmap_share;
    shortest = shortest > 0 ? shortest : 1;
    for (Py_ssize_t g = 0; g < self->n_groups; g++) {
        int64_t length = starts[g + 1] - starts[g];
        if (length >= shortest) {
            n_bitmaps++;
            n_rules += length;
        }
    }
    if (n_bitmaps == 0) {
        return NULL;
    }
    size_t words = (size_t)n_bitmaps * (size_t)self->n_words;
    self->bitmap_of = PyMem_RawMalloc((size_t)self->n_groups * sizeof(int64_t));
    self->bitmaps = PyMem_RawCalloc(words, sizeof(uint64_t));
    self->bitmap_ranks = PyMem_RawMalloc(words * sizeof(uint32_t));
    self->bitmap_rules_start = PyMem_RawMalloc((size_t)n_bitmaps * sizeof(int64_t));
    self->bitmap_keys = PyMem_RawMalloc((size_t)n_rules * sizeof(uint64_t));
    self->bitmap_weights = PyMem_RawMalloc((size_t)n_rules * sizeof(uint32_t));
    if (self->bitmap_of == NULL || self->bitmaps == NULL || self->bitmap_ranks == NULL ||
        self->bitmap_rules_start == NULL || self->bitmap_keys == NULL ||
        self->bitmap_weights == NULL) {
        return OUT_OF_MEMORY;
    }
    Py_ssize_t b = 0;
    int64_t rules_at = 0;
    for (Py_ssize_t g = 0; g < self->n_groups; g++) {
        int64_t start = starts[g], length = starts[g + 1] - start;
        if (length < shortest) {
            self->bitmap_of[g] = -1;
            continue;
        }
        uint64_t *bitmap = self->bitmaps + (size_t)b * (size_t)self->n_words;
        uint32_t *ranks = self->bitmap_ranks + (size_t)b * (size_t)self->n_words;
        for (int64_t at = 0; at < length; at++) {
            uint64_t song = song_at(&self->consequents, start + at);
            uint64_t bit = (uint64_t)1 << (song & 63);
            if (bitmap[song >> 6] & bit) {
                return "a run names a consequent twice";
            }
            bitmap[song >> 6] |= bit;
        }
        uint32_t below = 0;
        for (Py_ssize_t w = 0; w < self->n_words; w++) {
            ranks[w] = below;
            below += (uint32_t)__builtin_popcountll(bitmap[w]);
        }
        for (int64_t at = start; at < start + length; at++) {
            uint64_t song = song_at(&self->consequents, at);
            int64_t rule =
                rules_at + ranks[song >> 6] + bits_below(bitmap[song >> 6], (int)(song & 63));
            self->bitmap_keys[rule] = keys[at];
            self->bitmap_weights[rule] = weights[at];
        }
        self->bitmap_of[g] = b;
        self->bitmap_rules_start[b] = rules_at;
        rules_at += length;
        b++;
    }
    self->n_bitmaps = n_bitmaps;
    return NULL;
}

static void
release_all(SmallQueryIndex *self)
{
    Py_buffer *views[] = {&self->codes,   &self->starts,    &self->rows,
                          &self->keys,    &self->consequents, &self->weights,
                          &self->tie_songs, &self->popular};
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        if (views[i]->obj != NULL) {
            PyBuffer_Release(views[i]);
        }
    }
    PyMem_RawFree(self->table_hashes);
    PyMem_RawFree(self->table_groups);
    PyMem_RawFree(self->scratch);
    PyMem_RawFree(self->scratch_stamps);
    PyMem_RawFree(self->scratch_claimed);
    PyMem_RawFree(self->scratch_marks);
    PyMem_RawFree(self->bitmap_of);
    PyMem_RawFree(self->bitmaps);
    PyMem_RawFree(self->bitmap_ranks);
    PyMem_RawFree(self->bitmap_rules_start);
    PyMem_RawFree(self->bitmap_keys);
    PyMem_RawFree(self->bitmap_weights);
    self->bitmap_of = NULL;
    self->bitmaps = NULL;
    self->bitmap_ranks = NULL;
    self->bitmap_rules_start = NULL;
    self->bitmap_keys = NULL;
    self->bitmap_weights = NULL;
    self->n_bitmaps = 0;
    self->table_hashes = NULL;
    self->table_groups = NULL;
    self->scratch = NULL;
    self->scratch_stamps = NULL;
    self->scratch_claimed = NULL;
    self->scratch_marks = NULL;
    Py_CLEAR(self->song_ids);
    Py_CLEAR(self->json_names);
}

static void
SmallQueryIndex_dealloc(SmallQueryIndex *self)
{
    release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
SmallQueryIndex_init(SmallQueryIndex *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"codes",       "group_hashes", "group_starts", "group_rows",
                               "row_width",   "keys",         "consequents",  "weights",
                               "tie_songs",   "popular",      "dense_songs",  "sum_depth",
                               "song_ids",    "json_names",   "bitmap_share", NULL};
    PyObject *codes, *hashes_array, *starts, *rows, *keys, *consequents, *weights, *tie_songs,
        *popular, *song_ids = NULL, *json_names = NULL;
    Py_ssize_t width, dense_songs = DENSE_SONGS, sum_depth = SUM_DEPTH,
               bitmap_share = BITMAP_SHARE;
    Py_buffer hashes = {0};
    if (self->codes.obj != NULL) {
        PyErr_SetString(PyExc_TypeError, "SmallQueryIndex is immutable");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOnOOOOO|nnOOn:SmallQueryIndex", keywords,
                                     &codes, &hashes_array, &starts, &rows, &width, &keys,
                                     &consequents, &weights, &tie_songs, &popular,
                                     &dense_songs, &sum_depth, &song_ids, &json_names,
                                     &bitmap_share)) {
        return -1;
    }
    song_ids = song_ids == Py_None ? NULL : song_ids;
    json_names = json_names == Py_None ? NULL : json_names;
    if ((song_ids == NULL) != (json_names == NULL)) {
        PyErr_SetString(PyExc_TypeError, "song_ids and json_names go together");
        return -1;
    }
    if (song_ids != NULL && !PyDict_CheckExact(song_ids)) {
        PyErr_SetString(PyExc_TypeError, "song_ids must be a dict");
        return -1;
    }
    if (json_names != NULL && !PyTuple_CheckExact(json_names)) {
        PyErr_SetString(PyExc_TypeError, "json_names must be a tuple");
        return -1;
    }
    if (sum_depth < 0) {
        PyErr_Format(PyExc_ValueError, "sum_depth must be at least 0, not %zd", sum_depth);
        return -1;
    }
    self->sum_depth = sum_depth;
    if (bitmap_share < 0) {
        PyErr_Format(PyExc_ValueError, "bitmap_share must be at least 0, not %zd", bitmap_share);
        return -1;
    }
    /* Bitmaps serve the array tally's early stop only. */
    self->bitmap_share = sum_depth > 0 && popcount_supported() ? bitmap_share : 0;
    if (dense_songs < 0 || dense_songs > DENSE_SONGS) {
        PyErr_Format(PyExc_ValueError, "dense_songs must be from 0 to %d, not %zd", DENSE_SONGS,
                     dense_songs);
        return -1;
    }
    self->dense_songs = dense_songs;
    if (take_buffer(codes, &self->codes, "LQ", 8, "codes", "uint64") < 0 ||
        take_buffer(hashes_array, &hashes, "LQ", 8, "group_hashes", "uint64") < 0 ||
        take_buffer(starts, &self->starts, "lq", 8, "group_starts", "int64") < 0 ||
        take_buffer(rows, &self->rows, "BHILQ", 0, "group_rows", "unsigned song ids") < 0 ||
        take_buffer(keys, &self->keys, "LQ", 8, "keys", "uint64") < 0 ||
        take_buffer(consequents, &self->consequents, "BHILQ", 0, "consequents",
                    "unsigned song ids") < 0 ||
        take_buffer(weights, &self->weights, "IL", 4, "weights", "uint32") < 0 ||
        take_buffer(tie_songs, &self->tie_songs, "lq", 8, "tie_songs", "int64") < 0 ||
        take_buffer(popular, &self->popular, "lq", 8, "popular", "int64") < 0) {
        goto fail;
    }
    Py_ssize_t row_item = self->rows.itemsize;
    self->n_songs = self->codes.len / 8;
    self->n_groups = hashes.len / 8;
    self->width = width;
    self->n_keys = self->keys.len / 8;
    if ((uint64_t)self->n_songs > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "at most 2**32 - 1 songs");
        goto fail;
    }
    if (width < 1 || self->starts.len / 8 != self->n_groups + 1 ||
        self->rows.len / row_item != self->n_groups * width ||
        self->consequents.len / self->consequents.itemsize != self->n_keys ||
        self->weights.len / 4 != self->n_keys || self->tie_songs.len / 8 != self->n_songs ||
        self->popular.len / 8 != self->n_songs) {
        PyErr_SetString(PyExc_ValueError, "the index arrays disagree in length");
        goto fail;
    }
    if (json_names != NULL) {
        if (PyTuple_GET_SIZE(json_names) != self->n_songs) {
            PyErr_SetString(PyExc_ValueError, "json_names must hold one name per song");
            goto fail;
        }
        for (Py_ssize_t song = 0; song < self->n_songs; song++) {
            if (!PyBytes_CheckExact(PyTuple_GET_ITEM(json_names, song))) {
                PyErr_SetString(PyExc_TypeError, "json_names must hold bytes");
                goto fail;
            }
        }
        self->song_ids = Py_NewRef(song_ids);
        self->json_names = Py_NewRef(json_names);
    }
    uint64_t capacity = 8;
    while (capacity < 2 * (uint64_t)self->n_groups) {
        capacity *= 2;
    }
    self->table_hashes = PyMem_RawMalloc(capacity * sizeof(uint64_t));
    self->table_groups = PyMem_RawMalloc(capacity * sizeof(int64_t));
    if (self->table_hashes == NULL || self->table_groups == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    self->table_mask = capacity - 1;
    const char *problem;
    /* Only reads of the buffers and writes to the table: the event loop keeps serving. */
    Py_BEGIN_ALLOW_THREADS
    problem = check_and_fill_table(self, (const uint64_t *)hashes.buf);
    if (problem == NULL && self->n_songs <= self->dense_songs) {
        problem = build_run_bitmaps(self);
    }
    Py_END_ALLOW_THREADS
    if (problem == OUT_OF_MEMORY) {
        PyErr_NoMemory();
        goto fail;
    }
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto fail;
    }
    PyBuffer_Release(&hashes);
    return 0;

fail:
    if (hashes.obj != NULL) {
        PyBuffer_Release(&hashes);
    }
    /* As if never initialised: a failed index answers no query. */
    release_all(self);
    return -1;
}

/* (sum, key) of a sum-ranking candidate; keys are distinct, so this orders candidates fully. */
typedef struct {
    uint64_t sum;
    uint64_t key;
    int64_t song;
} Scored;

static inline int
ranks_above(const Scored *a, const Scored *b)
{
    return a->sum > b->sum || (a->sum == b->sum && a->key > b->key);
}

/* Restore the min-heap (the weakest candidate at the root) below `at`. */
static void
sift_down(Scored *heap, Py_ssize_t size, Py_ssize_t at)
{
    for (;;) {
        Py_ssize_t weakest = at, left = 2 * at + 1, right = left + 1;
        if (left < size && ranks_above(&heap[weakest], &heap[left])) {
            weakest = left;
        }
        if (right < size && ranks_above(&heap[weakest], &heap[right])) {
            weakest = right;
        }
        if (weakest == at) {
            return;
        }
        Scored swap = heap[at];
        heap[at] = heap[weakest];
        heap[weakest] = swap;
        at = weakest;
    }
}

/* Offer a candidate to a min-heap holding at most `capacity` of the best seen. */
static inline void
heap_offer(Scored *heap, Py_ssize_t *size, Py_ssize_t capacity, Scored candidate)
{
    if (*size < capacity) {
        Py_ssize_t at = (*size)++;
        while (at > 0 && ranks_above(&heap[(at - 1) / 2], &candidate)) {
            heap[at] = heap[(at - 1) / 2];
            at = (at - 1) / 2;
        }
        heap[at] = candidate;
    }
    else if (ranks_above(&candidate, &heap[0])) {
        heap[0] = candidate;
        sift_down(heap, *size, 0);
    }
}

/* The tally of `song`, a zero one taken for it if it has none yet. */
static inline Tally *
tally_of(TallyTable *table, uint32_t song)
{
    /* Fibonacci hashing: the top bits of the product spread consecutive ids. */
    uint64_t slot = ((uint64_t)song * 0x9E3779B97F4A7C15ULL) >> table->shift;
    for (;;) {
        uint32_t held = table->songs[slot];
        if (held == song) {
            return &table->tallies[slot];
        }
        if (held == NO_SONG) {
            table->songs[slot] = song;
            table->tallies[slot].sum = 0;
            table->tallies[slot].best = 0;
            table->claimed[table->n_claimed++] = (uint32_t)slot;
            return &table->tallies[slot];
        }
        slot = (slot + 1) & table->mask;
    }
}

/* Add the rules at [start, stop) to the tallies of their consequents, held as `type`. */
#define TALLY_RUN(type)                                                                       \
    do {                                                                                      \
        const type *consequents = (const type *)self->consequents.buf;                        \
        for (int64_t at = start; at < stop; at++) {                                           \
            Tally *tally = tally_of(table, (uint32_t)consequents[at]);                        \
            /* At most 2^31 per rule (confidence <= 1), one term per rule: no overflow. A     \
             * query song's best stays EXCLUDED, the largest key: no test needed here. */     \
            tally->sum += weights[at];                                                        \
            tally->best = keys[at] > tally->best ? keys[at] : tally->best;                    \
        }                                                                                     \
    } while (0)

/* The same into the index's scratch, indexed by song id. */
#define TALLY_RUN_DENSE(type)                                                                 \
    do {                                                                                      \
        const type *consequents = (const type *)self->consequents.buf;                        \
        for (int64_t at = start; at < stop; at++) {                                           \
            uint32_t song = (uint32_t)consequents[at];                                        \
            if (at + PREFETCH_AHEAD < stop) {                                                 \
                uint32_t ahead = (uint32_t)consequents[at + PREFETCH_AHEAD];                  \
                __builtin_prefetch(&tallies[ahead], 1);                                       \
                __builtin_prefetch(&stamps[ahead], 1);                                        \
            }                                                                                 \
            Tally *tally = &tallies[song];                                                    \
            if (stamps[song] != stamp) {                                                      \
                stamps[song] = stamp;                                                         \
                tally->sum = weights[at];                                                     \
                tally->best = keys[at];                                                       \
                claimed[n_claimed++] = song;                                                  \
            }                                                                                 \
            else {                                                                            \
                tally->sum += weights[at];                                                    \
                tally->best = keys[at] > tally->best ? keys[at] : tally->best;                \
            }                                                                                 \
        }                                                                                     \
    } while (0)

/* The rules at [start, stop) whose consequent is marked (a contender) added to its tally. */
#define FINISH_CONTENDERS(type)                                                               \
    do {                                                                                      \
        const type *consequents = (const type *)self->consequents.buf;                        \
        for (int64_t at = start; at < stop; at++) {                                           \
            uint32_t song = (uint32_t)consequents[at];                                        \
            if (marks[song >> 6] >> (song & 63) & 1) {                                        \
                Tally *tally = &tallies[song];                                                \
                tally->sum += weights[at];                                                    \
                tally->best = keys[at] > tally->best ? keys[at] : tally->best;                \
            }                                                                                 \
        }                                                                                     \
    } while (0)

/* FINISH_CONTENDERS for the rules of the run with the bitmap `b` past those read already,
 * whose keys are below `read_below` (a run is sorted by key): the contenders among its
 * consequents, word by word, each rule found by the bitmap's ranks. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
#endif
static void
finish_contenders_by_bitmap(const SmallQueryIndex *self, Py_ssize_t b, uint64_t read_below,
                            const uint64_t *marks, Tally *tallies)
{
    const uint64_t *bitmap = self->bitmaps + (size_t)b * (size_t)self->n_words;
    const uint32_t *ranks = self->bitmap_ranks + (size_t)b * (size_t)self->n_words;
    const uint64_t *keys = self->bitmap_keys + self->bitmap_rules_start[b];
    const uint32_t *weights = self->bitmap_weights + self->bitmap_rules_start[b];
    for (Py_ssize_t w = 0; w < self->n_words; w++) {
        for (uint64_t found = marks[w] & bitmap[w]; found != 0; found &= found - 1) {
            int bit = __builtin_ctzll(found);
            uint32_t rule = ranks[w] + bits_below(bitmap[w], bit);
            if (keys[rule] < read_below) {
                Tally *tally = &tallies[w * 64 + bit];
                tally->sum += weights[rule];
                tally->best = keys[rule] > tally->best ? keys[rule] : tally->best;
            }
        }
    }
}

/* MACRO(type) with the consequents' id type: the loops specialised, no switch per rule. */
#define BY_ID_WIDTH(MACRO)                                                                    \
    switch (self->consequents.itemsize) {                                                     \
    case 1:                                                                                   \
        MACRO(uint8_t);                                                                       \
        break;                                                                                \
    case 2:                                                                                   \
        MACRO(uint16_t);                                                                      \
        break;                                                                                \
    case 4:                                                                                   \
        MACRO(uint32_t);                                                                      \
        break;                                                                                \
    default:                                                                                  \
        MACRO(uint64_t);                                                                      \
    }

/* Offer the tallies of `claimed` (songs: `songs`, or the slot itself when NULL) to a heap of
 * the best `capacity` outside Q and sort it: the candidates best first into `heap`; returns
 * how many. */
static Py_ssize_t
best_of_tallies(const Tally *tallies, const uint32_t *claimed, Py_ssize_t n_claimed,
                const uint32_t *songs, Scored *heap, Py_ssize_t capacity)
{
    Py_ssize_t size = 0;
    for (Py_ssize_t c = 0; c < n_claimed && capacity > 0; c++) {
        uint32_t slot = claimed[c];
        const Tally *tally = &tallies[slot];
        if (tally->best != EXCLUDED) {
            int64_t song = songs == NULL ? (int64_t)slot : (int64_t)songs[slot];
            Scored candidate = {tally->sum, tally->best, song};
            heap_offer(heap, &size, capacity, candidate);
        }
    }
    /* Heap sort: each weakest goes to the end, leaving the best first. */
    for (Py_ssize_t end = size - 1; end > 0; end--) {
        Scored swap = heap[0];
        heap[0] = heap[end];
        heap[end] = swap;
        sift_down(heap, end, 0);
    }
    return size;
}

/* The sum ranking over the runs `hits`, tallied in `table` (empty, with room for Q and every
 * consequent): the best `capacity` candidates outside Q, best first, into `heap`; returns
 * how many. */
static Py_ssize_t
sum_ranking(const SmallQueryIndex *self, TallyTable *table, const int64_t *hits,
            Py_ssize_t n_hits, const int64_t *query, Py_ssize_t n_query, Scored *heap,
            Py_ssize_t capacity)
{
    const int64_t *starts = (const int64_t *)self->starts.buf;
    const uint64_t *keys = (const uint64_t *)self->keys.buf;
    const uint32_t *weights = (const uint32_t *)self->weights.buf;
    for (Py_ssize_t i = 0; i < n_query; i++) {
        tally_of(table, (uint32_t)query[i])->best = EXCLUDED;
    }
    for (Py_ssize_t h = 0; h < n_hits; h++) {
        int64_t start = starts[hits[h]], stop = starts[hits[h] + 1];
        BY_ID_WIDTH(TALLY_RUN)
    }
    /* Q's songs took the first slots claimed: skip them. */
    return best_of_tallies(table->tallies, table->claimed + n_query, table->n_claimed - n_query,
                           table->songs, heap, capacity);
}

/* The sum ranking as sum_ranking, tallied in the index's scratch (which exists and is not in
 * use), stopping early when it can, with the same answer.
 *
 * Runs are sorted by key, so by confidence: a rule not read yet weighs at most its run's
 * frontier (the weight of the next rule), and a song's final sum is at most its sum so far
 * plus the frontiers (T). Each run is read to a depth (sum_depth, then doubled); once the
 * k-th best sum so far (L) exceeds T, no song outside the "contenders" (sum so far + T >= L)
 * can reach the k best: each of those has a final sum below L, which k songs already have.
 * The rest of the runs then only completes the contenders' sums and best keys: a bit test per
 * rule instead of a scattered tally (benchmarks/recommend.py). */
static Py_ssize_t
dense_sum_ranking(SmallQueryIndex *self, const int64_t *hits, Py_ssize_t n_hits,
                  const int64_t *query, Py_ssize_t n_query, Scored *heap, Py_ssize_t capacity)
{
    const int64_t *starts = (const int64_t *)self->starts.buf;
    const uint64_t *keys = (const uint64_t *)self->keys.buf;
    const uint32_t *weights = (const uint32_t *)self->weights.buf;
    Tally *tallies = self->scratch;
    uint32_t *stamps = self->scratch_stamps, *claimed = self->scratch_claimed;
    uint64_t *marks = self->scratch_marks;
    if (++self->stamp == 0) {
        /* Every 2^32 - 1 queries the stamps wrap: old ones could look current. */
        memset(stamps, 0, (size_t)self->n_songs * sizeof(uint32_t));
        self->stamp = 1;
    }
    const uint32_t stamp = self->stamp;
    Py_ssize_t n_claimed = 0;
    for (Py_ssize_t i = 0; i < n_query; i++) {
        stamps[query[i]] = stamp;
        tallies[query[i]].best = EXCLUDED;
    }
    if (n_hits > STACK_SUBSETS || capacity == 0 || self->sum_depth == 0) {
        /* No early stop (none asked for, or more runs than read_to below counts). */
        for (Py_ssize_t h = 0; h < n_hits; h++) {
            int64_t start = starts[hits[h]], stop = starts[hits[h] + 1];
            BY_ID_WIDTH(TALLY_RUN_DENSE)
        }
        return best_of_tallies(tallies, claimed, n_claimed, NULL, heap, capacity);
    }
    /* Where each run's reading stands. */
    int64_t read_to[STACK_SUBSETS];
    for (Py_ssize_t h = 0; h < n_hits; h++) {
        read_to[h] = starts[hits[h]];
    }
    for (Py_ssize_t depth = self->sum_depth;; depth *= 2) {
        uint64_t frontier = 0;
        for (Py_ssize_t h = 0; h < n_hits; h++) {
            int64_t start = read_to[h], end = starts[hits[h] + 1];
            int64_t stop = end - starts[hits[h]] > depth ? starts[hits[h]] + depth : end;
            BY_ID_WIDTH(TALLY_RUN_DENSE)
            read_to[h] = stop;
            frontier += stop < end ? weights[stop] : 0;
        }
        if (frontier == 0) {
            break; /* every rule read */
        }
        Py_ssize_t size = best_of_tallies(tallies, claimed, n_claimed, NULL, heap, capacity);
        if (size == capacity && heap[size - 1].sum > frontier) {
            uint64_t floor = heap[size - 1].sum - frontier;
            Py_ssize_t n_contenders = 0;
            for (Py_ssize_t c = 0; c < n_claimed; c++) {
                uint32_t song = claimed[c];
                if (tallies[song].sum >= floor && tallies[song].best != EXCLUDED) {
                    marks[song >> 6] |= (uint64_t)1 << (song & 63);
                    claimed[n_contenders++] = song;
                }
            }
            for (Py_ssize_t h = 0; h < n_hits; h++) {
                int64_t start = read_to[h], stop = starts[hits[h] + 1];
                Py_ssize_t b = self->bitmap_of == NULL ? -1 : self->bitmap_of[hits[h]];
                if (b >= 0 && stop > start) {
                    /* Keys are distinct: the rules read are those of keys >= the last one's. */
                    uint64_t read_below = start > starts[hits[h]] ? keys[start - 1] : EXCLUDED;
                    finish_contenders_by_bitmap(self, b, read_below, marks, tallies);
                }
                else {
                    BY_ID_WIDTH(FINISH_CONTENDERS)
                }
            }
            for (Py_ssize_t c = 0; c < n_contenders; c++) {
                marks[claimed[c] >> 6] = 0;
            }
            return best_of_tallies(tallies, claimed, n_contenders, NULL, heap, capacity);
        }
    }
    return best_of_tallies(tallies, claimed, n_claimed, NULL, heap, capacity);
}

/* Whether the index's scratch can serve this query, allocated at the first one. */
static int
scratch_ready(SmallQueryIndex *self)
{
    if (self->n_songs > self->dense_songs || self->scratch_busy) {
        return 0;
    }
    if (self->scratch == NULL) {
        size_t n = (size_t)self->n_songs;
        Tally *tallies = PyMem_RawMalloc(n * sizeof(Tally) + 1);
        uint32_t *stamps = PyMem_RawCalloc(n + 1, sizeof(uint32_t));
        uint32_t *claimed = PyMem_RawMalloc(n * sizeof(uint32_t) + 1);
        uint64_t *marks = PyMem_RawCalloc(n / 64 + 1, sizeof(uint64_t));
        if (tallies == NULL || stamps == NULL || claimed == NULL || marks == NULL) {
            /* The hash table still answers. */
            PyMem_RawFree(tallies);
            PyMem_RawFree(stamps);
            PyMem_RawFree(claimed);
            PyMem_RawFree(marks);
            return 0;
        }
        self->scratch_marks = marks;
        self->scratch = tallies;
        self->scratch_stamps = stamps;
        self->scratch_claimed = claimed;
        self->stamp = 0;
    }
    return 1;
}

#undef TALLY_RUN_DENSE
#undef FINISH_CONTENDERS
#undef BY_ID_WIDTH
#undef TALLY_RUN

/* The last two arguments of answer() and answer_json(): the limit and whether to sum.
 * Returns -1 with an exception set. */
static int
parse_limit_and_ranking(const SmallQueryIndex *self, PyObject *const *args, Py_ssize_t nargs,
                        const char *usage, Py_ssize_t *limit, int *summed)
{
    if (self->table_groups == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SmallQueryIndex was not initialised");
        return -1;
    }
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if ((*summed = PyObject_IsTrue(args[2])) < 0) {
        return -1;
    }
    *limit = PyLong_AsSsize_t(args[1]);
    if (*limit == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*limit < 1) {
        PyErr_Format(PyExc_ValueError, "limit must be at least 1, not %zd", *limit);
        return -1;
    }
    return 0;
}

/* The query's distinct song ids, from a sequence of them, into `query` (room for
 * MAX_SUBSET_SONGS). Returns -1 with an exception set. */
static int
parse_query_ids(const SmallQueryIndex *self, PyObject *ids, int64_t *query, Py_ssize_t *n_query)
{
    PyObject *sequence = PySequence_Fast(ids, "the query must be a sequence of song ids");
    if (sequence == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    int failed = 0;
    if (n > MAX_SUBSET_SONGS) {
        PyErr_Format(PyExc_ValueError, "at most %d songs per query, not %zd", MAX_SUBSET_SONGS,
                     n);
        failed = 1;
    }
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        Py_ssize_t song = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sequence, i));
        if (song == -1 && PyErr_Occurred()) {
            failed = 1;
            break;
        }
        if (song < 0 || song >= self->n_songs) {
            PyErr_Format(PyExc_ValueError, "no song has id %zd", song);
            failed = 1;
            break;
        }
        for (Py_ssize_t j = 0; j < i && !failed; j++) {
            if (query[j] == song) {
                PyErr_Format(PyExc_ValueError, "song %zd is in the query twice", song);
                failed = 1;
            }
        }
        query[i] = song;
    }
    Py_DECREF(sequence);
    *n_query = n;
    return failed ? -1 : 0;
}

/* The query's distinct song ids from a sequence of names, each matched exactly, into `query`
 * (room for MAX_SUBSET_SONGS). Returns 1 when every name is a song's and there are at most
 * MAX_SUBSET_SONGS songs, 0 when not (the caller answers another way), -1 with an exception
 * set. */
static int
parse_query_names(const SmallQueryIndex *self, PyObject *names, int64_t *query,
                  Py_ssize_t *n_query)
{
    PyObject *sequence = PySequence_Fast(names, "the query must be a sequence of song names");
    if (sequence == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence), distinct = 0;
    int found = 1;
    for (Py_ssize_t i = 0; i < n && found == 1; i++) {
        PyObject *name = PySequence_Fast_GET_ITEM(sequence, i);
        PyObject *id = PyDict_GetItemWithError(self->song_ids, name);
        if (id == NULL) {
            found = PyErr_Occurred() ? -1 : 0;
            break;
        }
        Py_ssize_t song = PyLong_AsSsize_t(id);
        if (song == -1 && PyErr_Occurred()) {
            found = -1;
            break;
        }
        if (song < 0 || song >= self->n_songs) {
            PyErr_Format(PyExc_ValueError, "the names map a song to id %zd, which no song has",
                         song);
            found = -1;
            break;
        }
        int repeated = 0;
        for (Py_ssize_t j = 0; j < distinct && !repeated; j++) {
            repeated = query[j] == song;
        }
        if (!repeated) {
            if (distinct == MAX_SUBSET_SONGS) {
                found = 0;
                break;
            }
            query[distinct++] = song;
        }
    }
    Py_DECREF(sequence);
    *n_query = distinct;
    return found;
}

/* Whether the antecedent `group` holds only songs of Q: a hash match is checked against the
 * antecedent itself, so a hit is exact, not probable. */
static int
antecedent_in_query(const SmallQueryIndex *self, int64_t group, const int64_t *query,
                    Py_ssize_t n_query)
{
    for (Py_ssize_t c = 0; c < self->width; c++) {
        uint64_t song = song_at(&self->rows, group * self->width + c);
        if (song == (uint64_t)self->n_songs) {
            continue; /* padding */
        }
        int found = 0;
        for (Py_ssize_t i = 0; i < n_query && !found; i++) {
            found = (uint64_t)query[i] == song;
        }
        if (!found) {
            return 0;
        }
    }
    return 1;
}

/* The runs of the antecedents inside Q into `hits` (room for 2^|Q|), `subsets` being room
 * for as many subset hashes; returns how many, and in *pool_size how many keys the ranking
 * reads: each run's first `most` for best (each run names a consequent once, so its first
 * `limit + |Q|` keys hold its best `limit` candidates outside Q), whole runs for sum. */
static Py_ssize_t
find_runs(const SmallQueryIndex *self, const int64_t *query, Py_ssize_t n_query,
          Py_ssize_t most, int summed, uint64_t *subsets, int64_t *hits, Py_ssize_t *pool_size)
{
    const uint64_t *codes = (const uint64_t *)self->codes.buf;
    const int64_t *starts = (const int64_t *)self->starts.buf;
    /* The hashes of the subsets of Q: doubled once per song that is in some antecedent. */
    Py_ssize_t n_subsets = 1;
    subsets[0] = 0;
    for (Py_ssize_t i = 0; i < n_query; i++) {
        uint64_t code = codes[query[i]];
        if (code) {
            for (Py_ssize_t j = 0; j < n_subsets; j++) {
                subsets[n_subsets + j] = subsets[j] ^ code;
            }
            n_subsets *= 2;
        }
    }
    Py_ssize_t n_hits = 0;
    *pool_size = 0;
    for (Py_ssize_t s = 1; s < n_subsets; s++) {
        int64_t group = find_group(self, subsets[s]);
        if (group != EMPTY_SLOT && antecedent_in_query(self, group, query, n_query)) {
            Py_ssize_t run = (Py_ssize_t)(starts[group + 1] - starts[group]);
            hits[n_hits++] = group;
            *pool_size += run < most || summed ? run : most;
        }
    }
    return n_hits;
}

/* The sum ranking of the runs `hits` (`pool_size` rules): at most `wanted` candidates, best
 * first, into `chosen` and added to `listed`. Returns how many, or -1 with an exception
 * set. */
static Py_ssize_t
answer_by_sum(SmallQueryIndex *self, const int64_t *hits, Py_ssize_t n_hits,
              const int64_t *query, Py_ssize_t n_query, Py_ssize_t wanted,
              Py_ssize_t pool_size, SongSet *listed, int64_t *chosen)
{
    Scored heap_on_stack[STACK_HEAP];
    Tally tallies_on_stack[STACK_TALLY_SLOTS];
    uint32_t songs_on_stack[STACK_TALLY_SLOTS], claimed_on_stack[STACK_TALLY_SLOTS / 2];
    TallyTable table = {tallies_on_stack, songs_on_stack, claimed_on_stack, 0, 0, 0};
    Scored *heap = heap_on_stack;
    Py_ssize_t ranked = -1;
    /* At most one candidate per rule read. */
    Py_ssize_t capacity = wanted < pool_size ? wanted : pool_size;
    if (capacity > STACK_HEAP && (heap = PyMem_Malloc(capacity * sizeof(Scored))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (scratch_ready(self)) {
        self->scratch_busy = 1;
        ranked = dense_sum_ranking(self, hits, n_hits, query, n_query, heap, capacity);
        self->scratch_busy = 0;
    }
    else {
        /* Room for Q and every distinct consequent, at most half full. */
        uint64_t most_songs = (uint64_t)(pool_size < self->n_songs ? pool_size : self->n_songs);
        uint64_t slots = 16;
        int bits = 4;
        while (slots < 2 * (most_songs + (uint64_t)n_query)) {
            slots *= 2;
            bits++;
        }
        if (slots > STACK_TALLY_SLOTS) {
            /* One block: the tallies first, for their alignment. */
            char *block = PyMem_Malloc(slots * (sizeof(Tally) + sizeof(uint32_t)) +
                                       slots / 2 * sizeof(uint32_t));
            if (block == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            table.tallies = (Tally *)block;
            table.songs = (uint32_t *)(table.tallies + slots);
            table.claimed = table.songs + slots;
        }
        table.shift = 64 - bits;
        table.mask = slots - 1;
        memset(table.songs, 0xFF, slots * sizeof(uint32_t)); /* every slot NO_SONG */
        ranked = sum_ranking(self, &table, hits, n_hits, query, n_query, heap, capacity);
    }
    for (Py_ssize_t r = 0; r < ranked; r++) {
        song_set_add(listed, heap[r].song);
        chosen[r] = heap[r].song;
    }
done:
    if (heap != heap_on_stack) {
        PyMem_Free(heap);
    }
    if (table.tallies != tallies_on_stack) {
        PyMem_Free(table.tallies);
    }
    return ranked;
}

/* The best ranking of the first `most` keys of each run `hits` (`pool_size` in all): at
 * most `limit` candidates outside `listed`, best first, into `chosen` and added to `listed`.
 * Returns how many, or -1 with an exception set. */
static Py_ssize_t
answer_by_best(const SmallQueryIndex *self, const int64_t *hits, Py_ssize_t n_hits,
               Py_ssize_t most, Py_ssize_t limit, Py_ssize_t pool_size, SongSet *listed,
               int64_t *chosen)
{
    const int64_t *starts = (const int64_t *)self->starts.buf;
    const uint64_t *keys = (const uint64_t *)self->keys.buf;
    const int64_t *tie_songs = (const int64_t *)self->tie_songs.buf;
    uint64_t pool_on_stack[STACK_POOL];
    uint64_t *pool = pool_on_stack;
    if (pool_size > STACK_POOL && (pool = PyMem_Malloc(pool_size * sizeof(uint64_t))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t filled = 0, n_chosen = 0;
    for (Py_ssize_t h = 0; h < n_hits; h++) {
        int64_t start = starts[hits[h]], stop = starts[hits[h] + 1];
        if (stop - start > most) {
            stop = start + most;
        }
        for (int64_t at = start; at < stop; at++) {
            pool[filled++] = keys[at];
        }
    }
    qsort(pool, (size_t)filled, sizeof(uint64_t), compare_keys_descending);
    for (Py_ssize_t p = 0; p < filled && n_chosen < limit; p++) {
        int64_t song = tie_songs[pool[p] % (uint64_t)self->n_songs];
        if (song_set_add(listed, song)) {
            chosen[n_chosen++] = song;
        }
    }
    if (pool != pool_on_stack) {
        PyMem_Free(pool);
    }
    return n_chosen;
}

/* The most popular songs not listed yet, added to `chosen` (holding `n_chosen`) until it
 * holds `limit`; returns how many it holds then. */
static Py_ssize_t
fill_with_popular(const SmallQueryIndex *self, SongSet *listed, int64_t *chosen,
                  Py_ssize_t n_chosen, Py_ssize_t limit)
{
    const int64_t *popular = (const int64_t *)self->popular.buf;
    /* Skips at most |Q| + n_chosen songs before the answer is full. */
    for (Py_ssize_t p = 0; p < self->n_songs && n_chosen < limit; p++) {
        if (song_set_add(listed, popular[p])) {
            chosen[n_chosen++] = popular[p];
        }
    }
    return n_chosen;
}

/* The answer to the query of distinct song ids `query`: its song ids into `chosen` (room for
 * min(limit, n_songs)), how many into *n_chosen; returns how many of them came from rules, or
 * -1 with an exception set. */
static Py_ssize_t
rank_query(SmallQueryIndex *self, const int64_t *query, Py_ssize_t n_query, Py_ssize_t limit,
           int summed, int64_t *chosen, Py_ssize_t *n_chosen)
{
    Py_ssize_t from_rules = -1;
    /* Up to 8 songs (the recommender's switch) and limit 100 everything lives on the stack. */
    uint64_t subsets_on_stack[STACK_SUBSETS];
    int64_t hits_on_stack[STACK_SUBSETS], set_on_stack[STACK_SET];
    uint64_t *subsets = subsets_on_stack;
    int64_t *hits = hits_on_stack;
    SongSet listed = {set_on_stack, 0};
    if (((Py_ssize_t)1 << n_query) > STACK_SUBSETS) {
        subsets = PyMem_Malloc(((size_t)1 << n_query) * sizeof(uint64_t));
        hits = PyMem_Malloc(((size_t)1 << n_query) * sizeof(int64_t));
        if (subsets == NULL || hits == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_ssize_t most = limit + n_query, pool_size;
    Py_ssize_t n_hits = find_runs(self, query, n_query, most, summed, subsets, hits, &pool_size);

    /* Q and the songs listed so far: never listed (again). */
    Py_ssize_t wanted = limit < self->n_songs ? limit : self->n_songs;
    uint64_t set_capacity = 16;
    while (set_capacity < 2 * (uint64_t)(n_query + wanted)) {
        set_capacity *= 2;
    }
    listed.mask = set_capacity - 1;
    if (set_capacity > STACK_SET &&
        (listed.slots = PyMem_Malloc(set_capacity * sizeof(int64_t))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint64_t slot = 0; slot < set_capacity; slot++) {
        listed.slots[slot] = EMPTY_SLOT;
    }
    for (Py_ssize_t i = 0; i < n_query; i++) {
        song_set_add(&listed, query[i]);
    }
    from_rules =
        summed ? answer_by_sum(self, hits, n_hits, query, n_query, wanted, pool_size, &listed,
                               chosen)
               : answer_by_best(self, hits, n_hits, most, limit, pool_size, &listed, chosen);
    if (from_rules >= 0) {
        *n_chosen = fill_with_popular(self, &listed, chosen, from_rules, limit);
    }

done:
    if (subsets != subsets_on_stack) {
        PyMem_Free(subsets);
        PyMem_Free(hits);
    }
    if (listed.slots != set_on_stack) {
        PyMem_Free(listed.slots);
    }
    return from_rules;
}

/* Writes an answer's songs (`n` song ids) as the Python object a method returns; NULL with an
 * exception set. */
typedef PyObject *(*SongsWriter)(const SmallQueryIndex *self, const int64_t *songs,
                                 Py_ssize_t n);

/* The songs as a list of song ids. */
static PyObject *
songs_as_ids(const SmallQueryIndex *self, const int64_t *songs, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *id = PyLong_FromLongLong(songs[i]);
        if (id == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, id);
    }
    return list;
}

/* The songs as the JSON array of their names: "[" name (", " name)* "]", each name encoded
 * once per rule set. */
static PyObject *
songs_as_json(const SmallQueryIndex *self, const int64_t *songs, Py_ssize_t n)
{
    Py_ssize_t size = 2 + (n > 1 ? 2 * (n - 1) : 0);
    for (Py_ssize_t i = 0; i < n; i++) {
        size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(self->json_names, songs[i]));
    }
    PyObject *body = PyBytes_FromStringAndSize(NULL, size);
    if (body == NULL) {
        return NULL;
    }
    char *at = PyBytes_AS_STRING(body);
    *at++ = '[';
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(self->json_names, songs[i]);
        if (i > 0) {
            *at++ = ',';
            *at++ = ' ';
        }
        memcpy(at, PyBytes_AS_STRING(name), (size_t)PyBytes_GET_SIZE(name));
        at += PyBytes_GET_SIZE(name);
    }
    *at = ']';
    return body;
}

/* The answer to the query of distinct song ids `query` as (its songs written by `write`, how
 * many of them came from rules); NULL with an exception set. */
static PyObject *
answer_as(SmallQueryIndex *self, const int64_t *query, Py_ssize_t n_query, Py_ssize_t limit,
          int summed, SongsWriter write)
{
    /* Room for min(limit, n_songs) song ids: on the stack up to STACK_HEAP. */
    int64_t chosen_on_stack[STACK_HEAP];
    int64_t *chosen = chosen_on_stack;
    Py_ssize_t most = limit < self->n_songs ? limit : self->n_songs;
    if (most > STACK_HEAP && (chosen = PyMem_Malloc((size_t)most * sizeof(int64_t))) == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *songs = NULL, *answer = NULL;
    Py_ssize_t n_chosen = 0;
    Py_ssize_t from_rules = rank_query(self, query, n_query, limit, summed, chosen, &n_chosen);
    if (from_rules >= 0 && (songs = write(self, chosen, n_chosen)) != NULL) {
        answer = Py_BuildValue("(Nn)", songs, from_rules);
    }
    if (chosen != chosen_on_stack) {
        PyMem_Free(chosen);
    }
    return answer;
}

/* answer(query, limit, summed): (song ids, how many of them came from rules), as
 * recommender.query.SmallQueryPath.answer. */
static PyObject *
SmallQueryIndex_answer(SmallQueryIndex *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t query[MAX_SUBSET_SONGS];
    Py_ssize_t n_query, limit;
    int summed;
    if (parse_limit_and_ranking(self, args, nargs,
                                "answer() takes a list of song ids, a limit and whether to sum",
                                &limit, &summed) < 0 ||
        parse_query_ids(self, args[0], query, &n_query) < 0) {
        return NULL;
    }
    return answer_as(self, query, n_query, limit, summed, songs_as_ids);
}

/* answer_json(names, limit, summed): the answer for a query of song names, when each is a
 * song's exact name, as (the JSON array of its names, how many came from rules), else None. */
static PyObject *
SmallQueryIndex_answer_json(SmallQueryIndex *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t query[MAX_SUBSET_SONGS];
    Py_ssize_t n_query, limit;
    int summed;
    if (parse_limit_and_ranking(self, args, nargs,
                                "answer_json() takes a list of song names, a limit and whether "
                                "to sum",
                                &limit, &summed) < 0) {
        return NULL;
    }
    if (self->song_ids == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SmallQueryIndex was built without song names");
        return NULL;
    }
    int found = parse_query_names(self, args[0], query, &n_query);
    if (found <= 0) {
        return found < 0 ? NULL : Py_NewRef(Py_None);
    }
    return answer_as(self, query, n_query, limit, summed, songs_as_json);
}

static PyObject *
SmallQueryIndex_get_table_bytes(SmallQueryIndex *self, void *closure)
{
    uint64_t slots = self->table_groups == NULL ? 0 : self->table_mask + 1;
    uint64_t bytes = slots * (sizeof(uint64_t) + sizeof(int64_t));
    if (self->bitmap_of != NULL) {
        const int64_t *starts = (const int64_t *)self->starts.buf;
        uint64_t words = (uint64_t)self->n_bitmaps * (uint64_t)self->n_words;
        bytes += (uint64_t)self->n_groups * sizeof(int64_t) +
                 words * (sizeof(uint64_t) + sizeof(uint32_t)) +
                 (uint64_t)self->n_bitmaps * sizeof(int64_t);
        for (Py_ssize_t g = 0; g < self->n_groups; g++) {
            if (self->bitmap_of[g] >= 0) {
                bytes += (uint64_t)(starts[g + 1] - starts[g]) *
                         (sizeof(uint64_t) + sizeof(uint32_t));
            }
        }
    }
    return PyLong_FromUnsignedLongLong(bytes);
}

static PyMethodDef SmallQueryIndex_methods[] = {
    {"answer", (PyCFunction)(void (*)(void))SmallQueryIndex_answer, METH_FASTCALL,
     "answer(query, limit, summed): (song ids, how many came from rules) for a few distinct "
     "known song ids."},
    {"answer_json", (PyCFunction)(void (*)(void))SmallQueryIndex_answer_json, METH_FASTCALL,
     "answer_json(names, limit, summed): (the answer's names as a JSON array, how many came "
     "from rules) when every name is a song's own, else None."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SmallQueryIndex_getset[] = {
    {"table_bytes", (getter)SmallQueryIndex_get_table_bytes, NULL,
     "Bytes held by the antecedent hash table and the long runs' bitmaps.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SmallQueryIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "recommender._smallquery.SmallQueryIndex",
    .tp_doc = PyDoc_STR("The small-query path of the recommender over its numpy arrays."),
    .tp_basicsize = sizeof(SmallQueryIndex),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SmallQueryIndex_init,
    .tp_dealloc = (destructor)SmallQueryIndex_dealloc,
    .tp_methods = SmallQueryIndex_methods,
    .tp_getset = SmallQueryIndex_getset,
};

static struct PyModuleDef smallquery_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "recommender._smallquery",
    .m_doc = PyDoc_STR("The compiled small-query path of the recommender."),
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__smallquery(void)
{
    if (PyType_Ready(&SmallQueryIndexType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&smallquery_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&SmallQueryIndexType);
    if (PyModule_AddObject(module, "SmallQueryIndex", (PyObject *)&SmallQueryIndexType) < 0) {
        Py_DECREF(&SmallQueryIndexType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
