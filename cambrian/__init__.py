"""cambrian: vision-centric multimodal LLM probes in JAX/Flax."""

__version__ = "0.1.0"
