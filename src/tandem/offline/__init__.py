"""The offline driver: learning from a fixed dataset (Minari format)."""
