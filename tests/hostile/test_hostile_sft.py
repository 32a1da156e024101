"""Hostile SFT data: every bad line is named, and a file with any bad line is refused as a whole.

Skipping bad rows would train on less than the user believes is in the run without a word, so
`read_sft` checks every line first and refuses the file with one error that lists them.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from dscoder.errors import UserError
from dscoder.hub import load_tokenizer
from dscoder.train.sft import SftError, read_sft

GOOD = {"messages": [{"role": "user", "content": "Add 1 and 2."}, {"role": "assistant", "content": "3"}]}
GOOD_LINE = json.dumps(GOOD)


@pytest.fixture(scope="module")
def tok(smollm2_gguf):
    return load_tokenizer(None)


def refused(tmp_path, tok, lines: list[str], template: str | None = None) -> str:
    """The message of the one error reading `lines` gives."""
    path = tmp_path / "sft.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SftError) as info:
        read_sft(path, tok, max_len=512, template=template)
    assert isinstance(info.value, UserError)
    return str(info.value)


@pytest.mark.parametrize("bad, reason", [
    ("{not json", r"line 2: not JSON \(Expecting property name"),
    ('["a", "list"]', r"line 2: a JSON list, not an object"),
    ('{"prompt": "p", "completion": "c"}', r"line 2: neither form: .* found keys 'prompt', 'completion'"),
    ('{"instruction": "do it"}', r"line 2: an instruction row without 'output'"),
    ('{"instruction": "do it", "output": 3}', r"line 2: 'output' must be a string, not int"),
    (json.dumps({**GOOD, "instruction": "x"}), r"line 2: has both 'messages' and 'instruction'"),
    ('{"messages": []}', r"line 2: messages must be a non-empty list"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', r"line 2: a conversation without an assistant turn"),
    ('{"messages": [{"role": "assistant", "content": "hi"}]}', r"line 2: the conversation starts with an assistant"),
    ('{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}',
     r"line 2: message 0 has unknown role 'tool'"),
    ('{"messages": [{"role": "user", "content": ["parts"]}, {"role": "assistant", "content": "y"}]}',
     r"line 2: message 0 content must be a string, got list"),
    ('{"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}',
     r"line 2: message 0 must be an object with 'role' and 'content'"),
])
def test_each_bad_line_is_named_with_its_reason(tmp_path, tok, bad, reason):
    message = refused(tmp_path, tok, [GOOD_LINE, bad, GOOD_LINE])
    assert "1 of 3 rows cannot be used, so the file is refused as a whole" in message
    assert len([line for line in message.splitlines() if line.strip().startswith("line ")]) == 1
    assert re.search(reason, message), message


def test_a_line_that_is_not_utf8_is_named(tmp_path, tok):
    path = tmp_path / "sft.jsonl"
    path.write_bytes(GOOD_LINE.encode() + b'\n{"instruction": "\xff\xfe", "output": "x"}\n')
    with pytest.raises(SftError, match=r"line 2: not UTF-8 text"):
        read_sft(path, tok, max_len=512)


def test_a_template_that_fails_is_named_per_line(tmp_path, tok):
    template = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system messages') }}"
                "{% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    system = {"messages": [{"role": "system", "content": "s"}] + GOOD["messages"]}
    message = refused(tmp_path, tok, [GOOD_LINE, json.dumps(system), GOOD_LINE, json.dumps(system)], template)
    assert "line 2: the chat template refused the conversation: no system messages" in message
    assert "line 4: the chat template refused" in message and "line 1" not in message
    broken = refused(tmp_path, tok, [GOOD_LINE], "{{ messages[0].content | no_such_filter }}")
    assert "line 1: the chat template does not compile" in broken


def test_a_template_that_is_not_prefix_stable_is_refused(tmp_path, tok):
    """A template that writes the turn count first renders each prefix differently: no answer can be located."""
    template = ("{{ messages | length }} turns\n{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    message = refused(tmp_path, tok, [GOOD_LINE], template)
    assert "line 1: the chat template is not prefix-stable" in message


def test_a_tokenizer_without_a_template_is_one_error_naming_the_line(tmp_path, tok):
    bare = copy.copy(tok)
    bare.chat_template = None
    message = refused(tmp_path, bare, ['{"instruction": "a", "output": "b"}'])
    assert message.startswith(f"{tmp_path / 'sft.jsonl'}: line 1 needs a chat template")


def test_a_file_with_bad_lines_is_refused_as_a_whole_listing_the_first_ten(tmp_path, tok):
    lines = [GOOD_LINE if i % 3 else "garbage" for i in range(45)]  # lines 1, 4, ..., 43 are bad: 15 of them
    message = refused(tmp_path, tok, lines)
    assert "15 of 45 rows cannot be used" in message
    named = [line.strip() for line in message.splitlines() if line.strip().startswith("line ")]
    assert [int(n.split(":")[0].split()[1]) for n in named] == [1 + 3 * i for i in range(10)]
    assert message.rstrip().endswith("... and 5 more bad lines")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file_is_refused(tmp_path, tok, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(SftError, match="holds no rows"):
        read_sft(path, tok, max_len=512)


def test_blank_lines_are_not_rows_and_keep_line_numbers(tmp_path, tok):
    path = tmp_path / "sft.jsonl"
    path.write_text(f"\n{GOOD_LINE}\n\n{GOOD_LINE}\n\n")
    assert [s.line for s in read_sft(path, tok, max_len=512).samples] == [2, 4]
    assert "line 4: not JSON" in refused(tmp_path, tok, ["", GOOD_LINE, "", "nope"])


@pytest.mark.parametrize("max_len", [0, 1, -5, 2.5, True])
def test_a_bad_max_len_is_refused(tmp_path, tok, max_len):
    path = tmp_path / "sft.jsonl"
    path.write_text(GOOD_LINE + "\n")
    with pytest.raises(SftError, match="max_len must be an integer of at least 2"):
        read_sft(path, tok, max_len=max_len)
