"""A repository as code tools see it: its files read without following a link out of it or
running anything it configures (`ingest`), each file's language by name (`langid`), the
import graph between its files and the order that graph gives (`deps`), the names each file
defines (`symbols`), and the context a completion at a cursor reads from the rest of it
(`context`).

The data pipeline builds training documents from these (files in dependency order, each
after a `#path` line); completion and the server build prompts from the same pieces in the
same layout, so a model sees at inference what it was trained on.
"""
