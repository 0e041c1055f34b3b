"""Whole-loop compiled training for JAX-native envs (env steps, replay, updates in one jit)."""
