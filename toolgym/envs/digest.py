"""Canonical hashing of world states: the same state always gives the same digest.

The encoding itself lives in ``toolgym.envs.canonical`` (one policy for every boundary);
these names are kept for the many callers that hash states.
"""

from __future__ import annotations

from toolgym.envs.canonical import CanonicalError, canonical_bytes, digest, dumps, encode

canonical_json = dumps
"""JSON with sorted keys and no spaces; NaN, surrogates, objects and cycles in canonical form."""

__all__ = ["CanonicalError", "canonical_bytes", "canonical_json", "digest", "encode"]
