"""Errors raised by the index store. Each message says what is wrong and what to do about it."""

from __future__ import annotations


class IndexStoreError(Exception):
    """Base class: anything wrong with an index folder, reported to users as one line."""


class IndexNotFoundError(IndexStoreError):
    """No published index version in the folder."""


class IndexIncompatibleError(IndexStoreError):
    """The index was built by another model, dimension or format version than the one asked for."""


class IndexCorruptError(IndexStoreError):
    """A file of the index is missing, truncated or does not match its checksum, and no intact version remains."""


class IndexLockedError(IndexStoreError):
    """Another writer holds the index lock."""
