"""Ed25519 signing keys for model bundles: generate, load PEM, show the public half as base64.

The public half travels as base64 of the raw 32 bytes (``keys/*.pub``, ``boards/*.toml``).
"""
from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import KeyFileError

REPO = Path(__file__).resolve().parents[2]
DEV_PRIVATE_KEY = REPO / "keys" / "dev_ed25519.pem"
DEV_PUBLIC_KEY = REPO / "keys" / "dev_ed25519.pub"


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (keep it off the repository: anyone holding it can sign)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_base64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    return base64.b64encode(public_raw(key)).decode("ascii")


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from PEM (PKCS#8, unencrypted)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read private key ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: expected an Ed25519 key, found {type(key).__name__}")
    return key


def load_public_key(path_or_text: str | os.PathLike) -> bytes:
    """Raw 32-byte public key from a ``.pub`` file (base64 text), a PEM public/private key file, or base64 text."""
    text = str(path_or_text)
    path = Path(text)
    if path.is_file():
        data = path.read_bytes()
        if b"PRIVATE KEY" in data:
            return public_raw(load_private_key(path))
        if b"PUBLIC KEY" in data:
            try:
                key = serialization.load_pem_public_key(data)
            except ValueError as exc:
                raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
            if not isinstance(key, Ed25519PublicKey):
                raise KeyFileError(f"{path}: expected an Ed25519 key, found {type(key).__name__}")
            return public_raw(key)
        text = data.decode("ascii", "replace")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise KeyFileError(f"{path_or_text}: neither a key file nor base64 of a raw Ed25519 public key") from None
    if len(raw) != 32:
        raise KeyFileError(f"{path_or_text}: public key is {len(raw)} bytes (expected 32)")
    return raw


def write_keypair(private_path: str | os.PathLike, force: bool = False) -> tuple[Path, Path]:
    """Generate a key; write ``<name>.pem`` (``.pem`` added if missing) (mode 0600) and ``<name>.pub`` (base64 raw public key)."""
    private_path = Path(private_path)
    if private_path.suffix != ".pem":
        private_path = private_path.with_name(private_path.name + ".pem")
    public_path = private_path.with_suffix(".pub")
    for p in (private_path, public_path):
        if p.exists() and not force:
            raise KeyFileError(f"{p}: already exists (use --force to overwrite)")
    key = generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem(key))
    public_path.write_text(public_base64(key) + "\n")
    return private_path, public_path


def provision_board_text(text: str, public_key_b64: str, source: str = "board file") -> str:
    """A board file's TOML with its trusted keys replaced by ``public_key_b64`` (one base64 Ed25519 key).

    Only the top-level ``public_key = ...`` / ``public_keys = [...]`` lines change (comments and the rest are
    kept); the result is parsed again by the firmware's own parser, so a broken file is never written."""
    import base64
    import re

    from wearface.firmware.board import parse_board

    from ..errors import HostToolError

    if len(base64.b64decode(public_key_b64, validate=True)) != 32:
        raise HostToolError(f"{public_key_b64!r}: not a base64 Ed25519 public key")
    pattern = re.compile(r"^public_keys?\s*=\s*(\[[^\]]*\]|\"[^\"]*\")[ \t]*$", re.MULTILINE)
    if not pattern.search(text.split("\n[", 1)[0]):
        raise HostToolError(f"{source}: no top-level public_key / public_keys line to provision")
    head, sep, tail = text.partition("\n[")
    seen = []  # the first key line becomes the provisioned one; a second (both spellings) goes
    head = pattern.sub(lambda _: "" if seen.append(1) or len(seen) > 1 else f'public_keys = ["{public_key_b64}"]', head)
    out = head + sep + tail
    parse_board(out, source)
    return out


def provision_board_file(board_file: str | os.PathLike, public_key: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``out``: ``board_file`` trusting exactly ``public_key`` (a .pub / .pem path or base64 text)."""
    import base64

    text = Path(board_file).read_text()
    key_b64 = base64.b64encode(load_public_key(public_key)).decode("ascii")
    out = Path(out)
    out.write_text(provision_board_text(text, key_b64, str(board_file)))
    return out
