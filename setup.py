"""Packages are listed by walking the three code folders, so a new subpackage needs no edit here.

setup.cfg maps ``wearface.kernels`` -> ``kernels/`` (and the same for firmware and host_tools);
setuptools' own finders cannot see through that mapping, hence this walk.
"""
import os

from setuptools import setup

ROOTS = {"wearface.kernels": "kernels", "wearface.firmware": "firmware", "wearface.host_tools": "host_tools"}


def find_packages_under_mapping():
    found = []
    for package, folder in ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            if "__init__.py" in filenames:
                rel = os.path.relpath(dirpath, folder)
                found.append(package if rel == "." else package + "." + rel.replace(os.sep, "."))
    return found


setup(
    packages=find_packages_under_mapping(),
    package_dir={**ROOTS},
)
