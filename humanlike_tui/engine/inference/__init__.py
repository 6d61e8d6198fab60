"""Inference: streaming generation, the base model and an adapter answering the same prompt on one loaded base."""
