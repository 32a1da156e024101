"""Text to tokens and back: the byte-level BPE tokenizer, training a new one, chat templates
and the fill-in-the-middle spelling of each model's special tokens."""
