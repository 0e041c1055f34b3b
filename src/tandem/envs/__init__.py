"""Environment adapters and checks."""
