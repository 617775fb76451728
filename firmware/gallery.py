"""The gallery: enrolled people and their embeddings, in SQLite (WAL mode) on the board's flash.

One job: store embeddings per person and answer "who is nearest to this embedding?".

* Several embeddings per person, each a float32 (D,) L2-normalised vector stored as a little-endian
  blob, with the ``embedding_space`` (bundle.embedding_space_id of the net that computed it) and the
  model version.  Only embeddings of the loaded model's space are matched; the others are reported as
  "needs re-enrolment" (a new embedding net makes old vectors meaningless, so they are never compared).
* Match: the distance to a person is the Euclidean distance to the nearest of their embeddings (the bundle's
  ``gallery_match`` "nearest") or to their template, the L2-normalised mean of their embeddings ("mean": on held-out
  identities it names 2-7 points more enrolled people at the same share of strangers, docs/RESULTS.md "Session
  11"); the nearest person wins.  Distance >= θ (the bundle's threshold, metric "l2") means "unknown" (the
  seed's "Don't know").  ``margin`` = distance to the next other person - distance (None with one person).
  With a cohort (metric "l2_cohort": unit embeddings of strangers that the bundle carries) the decision is on
  ``score`` = distance / the probe's k-th nearest cohort distance: a probe that lies near many faces (blurred,
  dark, generic) must be that much nearer its person.  Measured on held-out identities it holds the stranger rate
  that a global θ does not (docs/RESULTS.md, "Decision rules").  Without a cohort ``score`` = distance.
* Crops (schema 2): beside each enrolment embedding the board may keep the aligned 112x112 RGB crop it was
  computed from (lossless PNG, ~20-30 KB a face; on the board's flash only, deleted with the person, never
  sent).  After a bundle with a new embedding space is confirmed, ``pending_crops`` lists the crops with no
  embedding in it and ``add_reembedded`` stores one (idempotent: a power cut resumes where it stopped);
  ``drop_other_spaces`` forgets the old space's embeddings once the new one has stayed confirmed.
* Durability: WAL journal with ``synchronous=FULL``: a committed enrolment survives the process being
  killed at any point (and power loss, as far as the flash honours fsync).  One connection guarded by a
  lock: the loop matches from an in-memory matrix, enrolment writes from the serial thread.

Must not import OpenCV or torch.
"""
from __future__ import annotations

import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import GalleryError

#: how the distance to an enrolled person is taken (a bundle's ``gallery_match``; the first is the default):
#: to their nearest enrolment embedding, or to their mean embedding (re-normalised)
GALLERY_MATCHES = ("nearest", "mean")

SCHEMA_VERSION = 2
CROP_SHAPE = (112, 112, 3)
MAX_NAME_CHARS = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_t REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    dim INTEGER NOT NULL,
    embedding_space TEXT NOT NULL,
    model_version TEXT NOT NULL,
    created_t REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_person ON embeddings(person_id);
CREATE TABLE IF NOT EXISTS crops (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    png BLOB NOT NULL,
    created_t REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS crops_person ON crops(person_id);
"""
#: schema 1 -> 2: embeddings remember the crop they came from (NULL: no crop kept)
_MIGRATE_2 = "ALTER TABLE embeddings ADD COLUMN crop_id INTEGER REFERENCES crops(id) ON DELETE CASCADE"
_UNIQUE_CROP_SPACE = ("CREATE UNIQUE INDEX IF NOT EXISTS embeddings_crop_space ON embeddings(crop_id, embedding_space) "
                      "WHERE crop_id IS NOT NULL")


def encode_crop(crop: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 (112, 112, 3) RGB crop (re-embedding it later gives bit-identical input)."""
    import cv2

    crop = np.asarray(crop)
    if crop.shape != CROP_SHAPE or crop.dtype != np.uint8:
        raise GalleryError("bad_crop", f"crop: expected uint8 {CROP_SHAPE}, found {crop.dtype} {crop.shape}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(crop[:, :, ::-1]))
    if not ok:
        raise GalleryError("bad_crop", "crop: PNG encoding failed")
    return buf.tobytes()


def decode_crop(png: bytes) -> np.ndarray:
    """uint8 (112, 112, 3) RGB from ``encode_crop``'s bytes; ``bad_crop`` for anything else."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) if png[:8] == b"\x89PNG\r\n\x1a\n" else None
    if bgr is None or bgr.shape != CROP_SHAPE:
        raise GalleryError("bad_crop", "a stored crop is not a 112x112 PNG")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _templates(matrix: np.ndarray, owners: np.ndarray, people: int) -> np.ndarray:
    """(people, D) float32: each person's embeddings (rows of ``matrix`` whose ``owners`` is that person) summed
    and L2-normalised, their template for ``gallery_match`` "mean"."""
    if not people or not matrix.size:
        return np.zeros((people, matrix.shape[1] if matrix.ndim == 2 else 0), np.float32)
    sums = np.zeros((people, matrix.shape[1]), np.float64)
    np.add.at(sums, owners, matrix)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    # opposite embeddings may cancel: such a person's template is zero, at distance 1 from every face
    return (sums / np.where(norms > 1e-12, norms, np.inf)).astype(np.float32)


def cohort_distance(embeddings: np.ndarray, cohort: np.ndarray, k: int) -> np.ndarray:
    """(N,) each embedding's ``k``-th nearest Euclidean distance to the ``cohort`` (M, D) (k = 1: the nearest), for
    (N, D) or one (D,) embedding; the scale of metric "l2_cohort".  float64 dot products: no (N, M, D) temporary."""
    e = np.atleast_2d(np.asarray(embeddings, np.float64))
    c = np.asarray(cohort, np.float64)
    d2 = (e * e).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * (e @ c.T)
    return np.sqrt(np.maximum(np.partition(d2, k - 1, axis=1)[:, k - 1], 0.0))


@dataclass(frozen=True)
class Match:
    """The answer for one embedding.  ``name`` is None for "unknown" (``score`` >= θ or empty gallery);
    ``nearest`` is the nearest person either way; ``margin`` = next person's distance - ``distance``;
    ``score``: what was compared with θ (``distance``, or distance / cohort distance with a cohort); ``threshold``:
    that θ (the nearest person's, ``Gallery.threshold_for``)."""

    name: Optional[str]
    nearest: Optional[str]
    distance: Optional[float]
    margin: Optional[float]
    next_name: Optional[str]
    score: Optional[float] = None
    threshold: Optional[float] = None

    def to_json(self) -> dict:
        return {"name": self.name, "nearest": self.nearest, "distance": self.distance, "margin": self.margin,
                "next_name": self.next_name, "score": self.score, "threshold": self.threshold}


#: Unicode categories refused anywhere in a name: control characters (Cc: C0, DEL, C1 incl. U+0085 NEL),
#: line and paragraph separators (Zl U+2028, Zp U+2029), surrogates (Cs), unassigned code points (Cn)
REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs", "Cn"})
#: bidirectional embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069): they make a name, or the log
#: line holding it, display as something else
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))


def check_name(name) -> str:
    """The one normal form of a person's name, used to enrol, delete and look up: Unicode NFC, with leading and
    trailing white space removed (``str.strip``).  ``GalleryError("bad_name")`` when the result is empty or
    longer than MAX_NAME_CHARS characters, or holds a control character, a line or paragraph separator
    (U+2028, U+2029, U+0085, CR, LF, ...), a bidi control, a surrogate or an unassigned code point."""
    if not isinstance(name, str):
        raise GalleryError("bad_name", f"name: expected a string, found {type(name).__name__}")
    normal = unicodedata.normalize("NFC", name)
    for i, c in enumerate(normal):  # before trimming: a trailing U+0085 or U+2028 is refused, not trimmed away
        category = unicodedata.category(c)
        if category in REFUSED_CATEGORIES or c in BIDI_CONTROLS:
            what = {"Cc": "a control character", "Cn": "an unassigned code point", "Cs": "a surrogate"}.get(
                category) or unicodedata.name(c, category)
            raise GalleryError("bad_name", f"name {normal!r:.80}: character {i} is U+{ord(c):04X} ({what}); a name "
                                           f"must hold no control characters, line separators or bidi controls")
    normal = normal.strip()
    if not normal or len(normal) > MAX_NAME_CHARS:
        raise GalleryError("bad_name", f"name {name!r:.80}: expected 1..{MAX_NAME_CHARS} characters after trimming, "
                                       f"found {len(normal)}")
    return normal


class Gallery:
    """The gallery in one SQLite file.  ``embedding_space``: the loaded model's space ("" = none loaded)."""

    def __init__(self, path: str | Path, embedding_space: str = "", threshold: float = float("inf")):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._tx():
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(embeddings)")}
            if "crop_id" not in columns:
                self._db.execute(_MIGRATE_2)
            self._db.execute(_UNIQUE_CROP_SPACE)
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        self.embedding_space = embedding_space
        self.threshold = float(threshold)
        self.cohort: Optional[np.ndarray] = None  # float32 (M, D) unit rows, or None: decide on the distance
        self.cohort_k = 0
        self.gallery_match = "nearest"  # or "mean": the distance to a person's mean embedding (bundle.gallery_match)
        #: θ for a person with 1, 2, ... usable embeddings, the last for more (bundle.threshold_by_count); () = θ
        self.threshold_by_count: tuple = ()
        self._counts = np.zeros(0, np.int64)  # usable embeddings of each person, in _names order
        self._matrix = np.zeros((0, 0), np.float32)
        self._templates = np.zeros((0, 0), np.float32)  # (P, D) each person's unit mean embedding, in _names order
        self._owners: np.ndarray = np.zeros(0, np.int64)
        self._names: list[str] = []
        self._reload()

    # ----------------------------------------------------------------------------- plumbing

    class _Tx:
        def __init__(self, gallery: "Gallery"):
            self.g = gallery

        def __enter__(self):
            self.g._lock.acquire()
            self.g._db.execute("BEGIN IMMEDIATE")
            return self.g._db

        def __exit__(self, kind, value, tb):
            try:
                self.g._db.execute("COMMIT" if kind is None else "ROLLBACK")
            finally:
                self.g._lock.release()
            return False

    def _tx(self) -> "_Tx":
        return Gallery._Tx(self)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def set_model(self, embedding_space: str, threshold: float, cohort: Optional[np.ndarray] = None,
                  cohort_k: int = 0, gallery_match: str = "nearest", threshold_by_count=()) -> list[str]:
        """Switch to a loaded model's space, θ, cohort (``bundle.cohort``, ``bundle.cohort_k``; None: decide on
        the distance), ``gallery_match`` ("nearest" or "mean") and θ by a person's enrolment count
        (``bundle.threshold_by_count``); returns the names that need re-enrolment."""
        if cohort is not None and not 1 <= cohort_k <= len(cohort):
            raise GalleryError("bad_cohort", f"cohort_k {cohort_k} must be in 1..{len(cohort)} (the cohort's rows)")
        if gallery_match not in GALLERY_MATCHES:
            raise GalleryError("bad_match", f"gallery_match {gallery_match!r:.40} must be one of {GALLERY_MATCHES}")
        by_count = tuple(float(t) for t in threshold_by_count)
        if not all(np.isfinite(t) and t > 0 for t in by_count):
            raise GalleryError("bad_threshold", f"threshold_by_count {by_count!r:.80}: expected positive numbers")
        with self._lock:
            self.embedding_space = embedding_space
            self.threshold = float(threshold)
            self.cohort = None if cohort is None else np.asarray(cohort, np.float32)
            self.cohort_k = int(cohort_k) if cohort is not None else 0
            self.gallery_match = gallery_match
            self.threshold_by_count = by_count
            self._reload()
            return self.needs_reenrolment()

    def _reload(self) -> None:
        """Cache the matchable embeddings (this space only) as one (N, D) float32 matrix."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.name, e.vector, e.dim FROM embeddings e JOIN people p ON p.id = e.person_id "
                "WHERE e.embedding_space = ? ORDER BY p.name, e.id", (self.embedding_space,)).fetchall()
            names = sorted({r[0] for r in rows})
            index = {n: i for i, n in enumerate(names)}
            if rows:
                dim = rows[0][2]
                self._matrix = np.stack([np.frombuffer(r[1], "<f4").astype(np.float32) for r in rows if r[2] == dim])
                self._owners = np.array([index[r[0]] for r in rows if r[2] == dim], np.int64)
            else:
                self._matrix = np.zeros((0, 0), np.float32)
                self._owners = np.zeros(0, np.int64)
            self._names = names
            self._templates = _templates(self._matrix, self._owners, len(names))
            self._counts = np.bincount(self._owners, minlength=len(names))

    # ----------------------------------------------------------------------------- writing

    def add(self, name: str, vectors: np.ndarray, model_version: str = "", crops=None) -> dict:
        """Add embeddings (N, D) float32 (each L2-normalised) for ``name`` (created if new), in one
        transaction; ``crops``: the N uint8 (112, 112, 3) RGB crops they came from, kept for re-embedding
        (None: none kept).  Returns this person's entry as ``list_people`` gives it."""
        name = check_name(name)
        pngs = None if crops is None else [encode_crop(c) for c in crops]
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0 or not np.all(np.isfinite(vectors)):
            raise GalleryError("bad_embedding", f"embeddings must be a finite (N, D) array, found shape {vectors.shape}")
        if not self.embedding_space:
            raise GalleryError("no_model", "no model is loaded, so embeddings have no space to be stored in")
        if pngs is not None and len(pngs) != len(vectors):
            raise GalleryError("bad_crop", f"{len(pngs)} crops for {len(vectors)} embeddings")
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO people(name, created_t) VALUES (?, ?)", (name, now))
            (person_id,) = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            for j, v in enumerate(vectors):
                crop_id = None
                if pngs is not None:
                    crop_id = db.execute("INSERT INTO crops(person_id, png, created_t) VALUES (?, ?, ?)",
                                         (person_id, pngs[j], now)).lastrowid
                db.execute("INSERT INTO embeddings(person_id, vector, dim, embedding_space, model_version, created_t, "
                           "crop_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (person_id, v.astype("<f4").tobytes(), int(v.size), self.embedding_space, str(model_version),
                            now, crop_id))
        self._reload()
        return next(p for p in self.list_people() if p["name"] == name)

    def delete(self, name: str) -> int:
        """Forget ``name`` (normalised by ``check_name``, as at enrolment) and all their embeddings; returns how
        many embeddings went.  ``unknown_name`` if nobody has that name, ``bad_name`` for a name no one could have."""
        name = check_name(name)
        with self._tx() as db:
            row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:  # a name stored before names were NFC-normalised
                row = next(((pid,) for pid, stored in db.execute("SELECT id, name FROM people")
                            if unicodedata.normalize("NFC", stored) == name), None)
            if row is None:
                raise GalleryError("unknown_name", f"nobody called {name!r} is enrolled")
            (count,) = db.execute("SELECT COUNT(*) FROM embeddings WHERE person_id = ?", row).fetchone()
            db.execute("DELETE FROM embeddings WHERE person_id = ?", row)
            db.execute("DELETE FROM crops WHERE person_id = ?", row)
            db.execute("DELETE FROM people WHERE id = ?", row)
        self._reload()
        return int(count)

    # ----------------------------------------------------------------------------- re-embedding

    def pending_crops(self, space: str | None = None) -> list[tuple[int, str]]:
        """(crop id, person's name) of every kept crop with no embedding in ``space`` (default: the loaded one)."""
        space = self.embedding_space if space is None else space
        with self._lock:
            return [(int(i), n) for i, n in self._db.execute(
                "SELECT c.id, p.name FROM crops c JOIN people p ON p.id = c.person_id WHERE NOT EXISTS "
                "(SELECT 1 FROM embeddings e WHERE e.crop_id = c.id AND e.embedding_space = ?) ORDER BY c.id", (space,))]

    def crop(self, crop_id: int) -> np.ndarray:
        """The kept crop ``crop_id``: uint8 (112, 112, 3) RGB (``unknown_crop`` if it went with its person)."""
        with self._lock:
            row = self._db.execute("SELECT png FROM crops WHERE id = ?", (int(crop_id),)).fetchone()
        if row is None:
            raise GalleryError("unknown_crop", f"no kept crop {crop_id} (its person may have been deleted)")
        return decode_crop(row[0])

    def crops_of(self, name: str) -> list[np.ndarray]:
        """The kept crops of ``name`` (oldest first)."""
        name = check_name(name)
        with self._lock:
            rows = self._db.execute("SELECT c.png FROM crops c JOIN people p ON p.id = c.person_id WHERE p.name = ? "
                                    "ORDER BY c.id", (name,)).fetchall()
        return [decode_crop(r[0]) for r in rows]

    def add_reembedded(self, crop_id: int, vector: np.ndarray, model_version: str = "", reload: bool = True) -> bool:
        """Store ``vector`` (D,) as crop ``crop_id``'s embedding in the loaded space, in one transaction.
        False (nothing written) if the crop is gone or already has one there: safe to repeat after a power cut."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise GalleryError("bad_embedding", "a re-embedded vector is empty or not finite")
        with self._tx() as db:
            row = db.execute("SELECT person_id FROM crops WHERE id = ?", (int(crop_id),)).fetchone()
            if row is None:
                return False
            cur = db.execute("INSERT OR IGNORE INTO embeddings(person_id, vector, dim, embedding_space, model_version, "
                             "created_t, crop_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (row[0], v.astype("<f4").tobytes(), int(v.size), self.embedding_space, str(model_version),
                              time.time(), int(crop_id)))
            written = cur.rowcount == 1
        if written and reload:
            self._reload()
        return written

    def reload(self) -> None:
        """Re-read the matchable embeddings (after a batch of ``add_reembedded(..., reload=False)``)."""
        self._reload()

    def drop_other_spaces(self, keep_space: str | None = None) -> int:
        """Forget every embedding not in ``keep_space`` (default: the loaded one); crops stay.  Returns how many."""
        keep_space = self.embedding_space if keep_space is None else keep_space
        with self._tx() as db:
            count = db.execute("DELETE FROM embeddings WHERE embedding_space != ?", (keep_space,)).rowcount
        self._reload()
        return int(count)

    def count_confirmed_boot(self, space: str) -> int:
        """One more confirmed boot of ``space`` (consecutive: another space's boot restarts the count); returns it."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'confirmed_space'").fetchone()
            boots = db.execute("SELECT value FROM meta WHERE key = 'confirmed_space_boots'").fetchone()
            n = int(boots[0]) + 1 if row is not None and boots is not None and row[0] == space else 1
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('confirmed_space', ?)", (space,))
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('confirmed_space_boots', ?)", (str(n),))
        return n

    # ----------------------------------------------------------------------------- reading

    def list_people(self) -> list[dict]:
        """One dict per person: name, embeddings (all), usable (in this space), needs_reenrolment (no usable
        embedding and no kept crop to make one from), spaces (space -> embeddings), crops (kept)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.name, e.embedding_space, COUNT(e.id) FROM people p "
                "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id, e.embedding_space ORDER BY p.name"
            ).fetchall()
            crops = dict(self._db.execute("SELECT p.name, COUNT(c.id) FROM people p JOIN crops c ON c.person_id = p.id "
                                          "GROUP BY p.id").fetchall())
        people: dict[str, dict] = {}
        for name, space, count in rows:
            entry = people.setdefault(name, {"name": name, "embeddings": 0, "usable": 0, "spaces": {},
                                             "crops": int(crops.get(name, 0))})
            if space is not None:
                entry["embeddings"] += count
                entry["spaces"][space] = int(count)
                if space == self.embedding_space:
                    entry["usable"] += count
        for entry in people.values():
            entry["needs_reenrolment"] = entry["usable"] == 0 and entry["crops"] == 0
        return list(people.values())

    def needs_reenrolment(self) -> list[str]:
        return [p["name"] for p in self.list_people() if p["needs_reenrolment"]]

    def size(self) -> int:
        """Number of people enrolled (matchable or not)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0])

    def embeddings_of(self, name: str) -> np.ndarray:
        """(N, D) float32 embeddings of ``name`` (normalised by ``check_name``) in the current space."""
        name = check_name(name)
        with self._lock:
            if name not in self._names:
                return np.zeros((0, self._matrix.shape[1] if self._matrix.size else 0), np.float32)
            return self._matrix[self._owners == self._names.index(name)].copy()

    def _per_person(self, embedding: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(names, (P,) float32 distance from ``embedding`` to each person's nearest embedding); ([], empty) when
        nothing is matchable."""
        with self._lock:
            matrix, owners, names = self._matrix, self._owners, self._names
            if self.gallery_match == "mean":
                matrix, owners = self._templates, np.arange(len(names))
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if not names or matrix.shape[1] != e.size:
            return [], np.zeros(0, np.float32)
        d = np.sqrt(np.maximum(np.sum((matrix - e) ** 2, axis=1), 0.0))
        per_person = np.full(len(names), np.inf, np.float32)
        np.minimum.at(per_person, owners, d)
        return names, per_person

    def match(self, embedding: np.ndarray) -> Match:
        """Nearest person to ``embedding`` (D,) float32 (L2-normalised), with distance and margin."""
        names, per_person = self._per_person(embedding)
        if not names:
            return Match(None, None, None, None, None)
        order = np.argsort(per_person, kind="stable")
        best = int(order[0])
        distance = float(per_person[best])
        if len(names) > 1:
            runner = int(order[1])
            margin, next_name = float(per_person[runner]) - distance, names[runner]
        else:
            margin, next_name = None, None
        threshold, scale = self._rule_for(embedding, names[best])
        score = distance if scale == 1.0 else distance / scale if scale > 0 else float("inf")
        name = names[best] if score < threshold else None
        return Match(name, names[best], distance, margin, next_name, score, threshold)

    def threshold_for(self, name: Optional[str] = None) -> float:
        """θ for the person ``name``: by their usable embeddings' count when the model gives a table
        (``threshold_by_count``), else the model's θ (also for None or a name not matchable now)."""
        with self._lock:
            by_count, names, counts = self.threshold_by_count, self._names, self._counts
            if not by_count or name not in names:
                return self.threshold
            n = int(counts[names.index(name)])
        return by_count[min(max(n, 1), len(by_count)) - 1]

    def _rule_for(self, embedding: np.ndarray, name: Optional[str] = None) -> tuple[float, float]:
        """(θ for the person ``name``, the scale a distance is divided by before it meets θ) for the probe
        ``embedding`` (D,): 1.0 without a cohort, else its k-th nearest cohort distance (metric "l2_cohort")."""
        with self._lock:  # one model's θ and cohort together, even while set_model switches them
            threshold, cohort, k = self.threshold_for(name), self.cohort, self.cohort_k
        e = np.asarray(embedding, np.float32).reshape(-1)
        if cohort is not None and cohort.shape[1] == e.size:
            return threshold, float(cohort_distance(e, cohort, k)[0])
        return threshold, 1.0

    def distance_threshold(self, embedding: np.ndarray, name: Optional[str] = None) -> float:
        """The distance under which the probe ``embedding`` (D,) is named as ``name`` (None: the model's θ): θ, or
        with a cohort θ x its k-th nearest cohort distance (θ bounds a ratio there; this is what it means in
        distance for this probe)."""
        threshold, scale = self._rule_for(embedding, name)
        return threshold * scale

    def nearest(self, embedding: np.ndarray, k: int = 3) -> list[dict]:
        """The ``k`` nearest people, nearest first: ``[{"name", "distance"}]`` (for explaining a decision)."""
        names, per_person = self._per_person(embedding)
        order = np.argsort(per_person, kind="stable")[:k]
        return [{"name": names[i], "distance": round(float(per_person[i]), 5)} for i in order]
