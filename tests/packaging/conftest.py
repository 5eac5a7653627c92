"""The package tests' fixtures (tests/packaging/debroot.py)."""

from tests.packaging.debroot import base, chroot, debs

__all__ = ["base", "chroot", "debs"]
