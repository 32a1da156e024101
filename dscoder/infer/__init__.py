"""Running a loaded model: generation and sampling, speculative decoding, infilling at a
cursor, chat sessions, the task prompts behind `dscoder explain/tests/...` (`assist`) and
perplexity."""
