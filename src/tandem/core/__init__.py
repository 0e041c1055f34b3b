"""Shared pure functions used by every algorithm; each is unit-tested in tests/core."""
