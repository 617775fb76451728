"""Fixtures for the bundle tests: one signed test bundle of random nets, and a way to rewrite its manifest."""
from __future__ import annotations

import json

import pytest

from wearface.firmware import bundle as fmt
from wearface.host_tools.bundle import bundle_build, keys

BOARD = "wearface-virtual"


@pytest.fixture(scope="session")
def dev_public_key() -> bytes:
    return keys.load_public_key(keys.DEV_PUBLIC_KEY)


@pytest.fixture(scope="session")
def dev_private_key():
    return keys.load_private_key(keys.DEV_PRIVATE_KEY)


@pytest.fixture(scope="session")
def signed_bundle() -> bytes:
    return bundle_build.build_test_bundle(seed=0, rollback_counter=5)


def rewrite_manifest(data: bytes, mutate, private_key) -> bytes:
    """Parse ``data``, let ``mutate(manifest_dict)`` change the manifest, repack and sign it again.

    ``mutate`` may also return ``(manifest, tensor_section_bytes)`` to replace the tensors.
    """
    container = fmt.parse_container(data)
    manifest = json.loads(container.data[container.manifest_offset: container.manifest_offset + container.manifest_size])
    tensors = container.data[container.tensors_offset: container.trailer_offset]
    result = mutate(manifest)
    if isinstance(result, tuple):
        manifest, tensors = result
    return bundle_build.sign_bundle(bundle_build.pack(manifest, tensors), private_key)
