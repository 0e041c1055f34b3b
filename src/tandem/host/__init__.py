"""The Python-environment (Gymnasium) driver: NumPy collection + the jitted updates."""
