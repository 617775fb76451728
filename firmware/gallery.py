"""The gallery: enrolled people and their embeddings, in SQLite (WAL mode) on the board's flash.

One job: store embeddings per person and answer "who is nearest to this embedding?".

* Several embeddings per person, each a float32 (D,) L2-normalised vector stored as a little-endian
  blob, with the ``embedding_space`` (bundle.embedding_space_id of the net that computed it) and the
  model version.  Only embeddings of the loaded model's space are matched; the others are reported as
  "needs re-enrolment" (a new embedding net makes old vectors meaningless, so they are never compared).
* Match: the distance to a person is the Euclidean distance to the nearest of their embeddings; the
  nearest person wins.  Distance >= θ (the bundle's threshold, metric "l2") means "unknown" (the
  seed's "Don't know").  ``margin`` = distance to the next other person - distance (None with one person).
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

SCHEMA_VERSION = 1
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
"""


@dataclass(frozen=True)
class Match:
    """The answer for one embedding.  ``name`` is None for "unknown" (``distance`` >= θ or empty gallery);
    ``nearest`` is the nearest person either way; ``margin`` = next person's distance - ``distance``."""

    name: Optional[str]
    nearest: Optional[str]
    distance: Optional[float]
    margin: Optional[float]
    next_name: Optional[str]

    def to_json(self) -> dict:
        return {"name": self.name, "nearest": self.nearest, "distance": self.distance, "margin": self.margin,
                "next_name": self.next_name}


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
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        self.embedding_space = embedding_space
        self.threshold = float(threshold)
        self._matrix = np.zeros((0, 0), np.float32)
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

    def set_model(self, embedding_space: str, threshold: float) -> list[str]:
        """Switch to a loaded model's space and θ; returns the names that need re-enrolment."""
        with self._lock:
            self.embedding_space = embedding_space
            self.threshold = float(threshold)
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

    # ----------------------------------------------------------------------------- writing

    def add(self, name: str, vectors: np.ndarray, model_version: str = "") -> dict:
        """Add embeddings (N, D) float32 (each L2-normalised) for ``name`` (created if new), in one
        transaction.  Returns this person's entry as ``list_people`` gives it."""
        name = check_name(name)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0 or not np.all(np.isfinite(vectors)):
            raise GalleryError("bad_embedding", f"embeddings must be a finite (N, D) array, found shape {vectors.shape}")
        if not self.embedding_space:
            raise GalleryError("no_model", "no model is loaded, so embeddings have no space to be stored in")
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO people(name, created_t) VALUES (?, ?)", (name, now))
            (person_id,) = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            db.executemany(
                "INSERT INTO embeddings(person_id, vector, dim, embedding_space, model_version, created_t) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(person_id, v.astype("<f4").tobytes(), int(v.size), self.embedding_space, str(model_version), now)
                 for v in vectors])
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
            db.execute("DELETE FROM people WHERE id = ?", row)
        self._reload()
        return int(count)

    # ----------------------------------------------------------------------------- reading

    def list_people(self) -> list[dict]:
        """One dict per person: name, embeddings (all), usable (in this space), needs_reenrolment, spaces."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.name, e.embedding_space, COUNT(e.id) FROM people p "
                "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id, e.embedding_space ORDER BY p.name"
            ).fetchall()
        people: dict[str, dict] = {}
        for name, space, count in rows:
            entry = people.setdefault(name, {"name": name, "embeddings": 0, "usable": 0, "spaces": []})
            if space is not None:
                entry["embeddings"] += count
                entry["spaces"].append(space)
                if space == self.embedding_space:
                    entry["usable"] += count
        for entry in people.values():
            entry["needs_reenrolment"] = entry["usable"] == 0
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

    def match(self, embedding: np.ndarray) -> Match:
        """Nearest person to ``embedding`` (D,) float32 (L2-normalised), with distance and margin."""
        with self._lock:
            matrix, owners, names = self._matrix, self._owners, self._names
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if not names or matrix.shape[1] != e.size:
            return Match(None, None, None, None, None)
        d = np.sqrt(np.maximum(np.sum((matrix - e) ** 2, axis=1), 0.0))
        per_person = np.full(len(names), np.inf, np.float32)
        np.minimum.at(per_person, owners, d)
        order = np.argsort(per_person, kind="stable")
        best = int(order[0])
        distance = float(per_person[best])
        if len(names) > 1:
            runner = int(order[1])
            margin, next_name = float(per_person[runner]) - distance, names[runner]
        else:
            margin, next_name = None, None
        name = names[best] if distance < self.threshold else None
        return Match(name, names[best], distance, margin, next_name)
