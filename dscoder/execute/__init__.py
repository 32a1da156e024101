"""Running untrusted, model-written programs: the sandbox, the toolchains of each language,
and program + tests -> verdict (`programs`), which evaluation and RL rewards share."""
