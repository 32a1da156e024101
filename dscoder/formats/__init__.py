"""Checkpoint files in and out: Hugging Face directories (`hf`) and GGUF files (`gguf`)."""
