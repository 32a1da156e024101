"""llama.cpp's n_indent rule for /infill, applied to text as it streams in."""

from __future__ import annotations


class IndentCut:
    """llama.cpp's n_indent: once a new line starts with less indentation than n_indent, the
    middle ends there (its newline and indentation kept, as llama.cpp keeps them).  As in
    llama.cpp, a blank (or whitespace-only) line counts: its indentation is what precedes its newline."""

    def __init__(self, n_indent: int):
        self.n_indent, self.seen_newline, self.column, self.in_indent = n_indent, False, 0, False

    def push(self, text: str) -> tuple[str, bool]:
        if self.n_indent <= 0:
            return text, False
        for i, ch in enumerate(text):
            if ch == "\n":
                if self.in_indent and self.seen_newline and self.column < self.n_indent:
                    return text[:i], True
                self.seen_newline, self.column, self.in_indent = True, 0, True
            elif self.in_indent and ch in " \t":
                self.column += 1
            elif self.in_indent:
                self.in_indent = False
                if self.seen_newline and self.column < self.n_indent:
                    return text[:i], True
        return text, False
