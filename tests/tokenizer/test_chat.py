"""Chat templates: the published templates and our built-in fallbacks render the reference strings."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import SHARED_DATA, shared_data
from dscoder.tokenizer.chat import (DEEPSEEK_CODER_V1_TEMPLATE, DEEPSEEK_CODER_V2_TEMPLATE, ChatTemplateError,
                          V1_DEFAULT_SYSTEM, chat_prompt, render_chat, stop_token_ids, template_for)

TEMPLATES = SHARED_DATA / "templates"
BUILT_IN = {"deepseek-coder-instruct.jinja": DEEPSEEK_CODER_V1_TEMPLATE,
            "deepseek-coder-v2-instruct.jinja": DEEPSEEK_CODER_V2_TEMPLATE}


def cases():
    data = json.loads(shared_data("templates", "cases.json").read_text())
    return data["messages"], data["cases"]


@pytest.mark.parametrize("index", [0, 1])
def test_published_templates_render_the_reference_strings(index):
    messages, all_cases = cases()
    case = all_cases[index]
    template = (TEMPLATES / case["template_file"]).read_text()
    got = render_chat(messages, template, bos_token=case["bos_token"], eos_token=case["eos_token"],
                      add_generation_prompt=case["add_generation_prompt"])
    assert got == case["expected"]


@pytest.mark.parametrize("index", [0, 1])
def test_built_in_fallbacks_render_the_same_strings(index):
    messages, all_cases = cases()
    case = all_cases[index]
    got = render_chat(messages, BUILT_IN[case["template_file"]], bos_token=case["bos_token"],
                      eos_token=case["eos_token"], add_generation_prompt=case["add_generation_prompt"])
    assert got == case["expected"]


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "write quicksort"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": " b "}, {"role": "user", "content": "c\n"}],
])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_built_in_fallbacks_agree_with_published_templates_beyond_the_fixture(messages, add_generation_prompt):
    """No system message (V1 then adds its default one), and no generation prompt."""
    cases()
    for name, ours in BUILT_IN.items():
        published = (TEMPLATES / name).read_text()
        kw = dict(bos_token="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>",
                  add_generation_prompt=add_generation_prompt)
        assert render_chat(messages, ours, **kw) == render_chat(messages, published, **kw)
    assert render_chat(messages, DEEPSEEK_CODER_V1_TEMPLATE).startswith(V1_DEFAULT_SYSTEM + "\n### Instruction:\n")


def vocab(tokens: dict[str, int], bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", template=None):
    return SimpleNamespace(bos_token=bos, eos_token=eos, eos_id=tokens.get(eos), chat_template=template,
                           token_to_id=tokens.get)


def test_template_and_stop_tokens_follow_the_vocabulary():
    v1 = vocab({"<｜end▁of▁sentence｜>": 32014, "<|EOT|>": 32021})
    v2 = vocab({"<｜end▁of▁sentence｜>": 100001})
    assert template_for(v1) is DEEPSEEK_CODER_V1_TEMPLATE and stop_token_ids(v1) == [32014, 32021]
    assert template_for(v2) is DEEPSEEK_CODER_V2_TEMPLATE and stop_token_ids(v2) == [100001]
    own = vocab({"</s>": 2}, bos="<s>", eos="</s>", template="{{ messages[0].content }}!")
    assert chat_prompt(own, [{"role": "user", "content": "hi"}]) == "hi!"
    with pytest.raises(ChatTemplateError, match="no chat_template"):
        template_for(vocab({}, bos="<s>", eos="</s>"))


def test_bad_conversations_and_templates_are_named():
    with pytest.raises(ChatTemplateError, match="message 1 has unknown role 'robot'"):
        render_chat([{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}], DEEPSEEK_CODER_V2_TEMPLATE)
    with pytest.raises(ChatTemplateError, match="message 0 must be an object with 'role' and 'content'"):
        render_chat([{"content": "x"}], DEEPSEEK_CODER_V2_TEMPLATE)
    with pytest.raises(ChatTemplateError, match="non-empty list"):
        render_chat([], DEEPSEEK_CODER_V2_TEMPLATE)
    refusing = "{% if messages[0].role != 'system' %}{{ raise_exception('first message must be system') }}{% endif %}"
    with pytest.raises(ChatTemplateError, match="refused the conversation: first message must be system"):
        render_chat([{"role": "user", "content": "x"}], refusing)
    with pytest.raises(ChatTemplateError, match="does not compile: line 1"):
        render_chat([{"role": "user", "content": "x"}], "{% for m in messages %}")
    with pytest.raises(ChatTemplateError, match="failed while rendering"):
        render_chat([{"role": "user", "content": "x"}], "{{ messages[0].content.__class__.__mro__ }}")
