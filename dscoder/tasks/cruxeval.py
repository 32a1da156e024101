"""CRUXEval (Gu et al. 2024): predict what a short Python function returns, or what it was given.

800 functions `f`, each with one input and its output. CRUXEval-O (`output`) shows the code and
`assert f(<input>) == ??` and asks for the output; CRUXEval-I (`input`) shows `assert f(??) ==
<output>` and asks for any input that gives it. The prompts are the benchmark's own
(facebookresearch/cruxeval `prompts.py`, MIT): the direct ones with their two worked examples,
and for the `-cot` subsets the chain-of-thought ones (one worked example with its reasoning in
`[THOUGHT]`), which DeepSeek-Coder-V2 reports. A base model continues the prompt up to
`[/ANSWER]`; an instruct model gets the same text as its message (as CRUXEval's OpenAI runs do).

The prediction is taken from the answer as CRUXEval does (`prediction`): after `[ANSWER]` for CoT,
then the text after the first `==` (output) or before it, after `assert` (input); an instruct
reply is read after its `[ANSWER]` tag or from its fenced block first (`chat_prediction`).
CRUXEval then runs `code` + `assert <output> == <prediction>`, a pass being that it exits 0. That
naive splice lets the prediction change the assert's meaning: `x or True` makes it trivially
true, `1\\nimport os` adds statements, an object whose `__eq__` always says True matches
anything. So the prediction goes into the sandboxed program only as a string literal (`repr`),
never as code and never evaluated in this process, and the program holds it to one expression:
- output: the text must compile as exactly one expression (a statement, `;`, a line break outside
  brackets all fail, even after the right value); it is evaluated before `f` is even defined,
  with nothing but the builtins in scope (the prompt asks for a literal; CRUXEval refuses only
  the exact text `f(<input>)`, here no call of `f` can reach it); its value must be plain data
  (the harness's guard on `ENTRY`), and it is compared with the expected output written as a
  literal in the checks, so no side effect of the prediction can change either side of `==`.
- input: the expression must be a call of `f` and nothing else (`f(1) or True` fails; CRUXEval
  only requires the text to contain "f("). Its arguments are evaluated in a copy of the program's
  namespace (the reference inputs use its names and lambdas), so they cannot rebind what `f`
  sees; the builtins, `f`'s own attributes and the names, modules and classes of its namespace
  are compared before and after (the builtins and `f` again after `f` ran), and an input that
  changed any of them fails. The real `f`, taken before the arguments ran, is then called, and
  its return must be plain data equal to the expected output.
Residual risks, stated: the contents of mutable globals are not compared (no CRUXEval function
reads one); an input argument that is an object of its own (CRUXEval allows that) runs its
methods while `f` runs, which can only change what `f` computes, which is what "any input that
gives this output" admits; and, as for every Python program here (`execute.pyharness`), code
that deliberately reaches into the interpreter (ctypes) is stopped by the sandbox, not by this.
"""

from __future__ import annotations

from pathlib import Path

from dscoder.errors import UserError
from dscoder.execute import harness
from dscoder.tasks.problem import Problem, code_from, data_file, json_lines

SUBSETS = ("output", "input", "output-cot", "input-cot")
STOPS = ("[/ANSWER]",)
# CRUXEval's OpenAI runs allow 100 tokens for a direct answer and 1000 with CoT; the longest
# reference answer line is 146 characters, so 256 leaves room for a verbose tokenizer.
MAX_NEW_TOKENS = {False: 256, True: 1024}
ENTRY = "dscoder_predicted"  # the guarded function the checks compare

# ---- the benchmark's prompts (prompts.py), word for word: the protocol ------------------------

_OUTPUT_TASK = ("You are given a Python function and an assertion containing an input to the function. Complete "
                "the assertion with a literal (no unsimplified expressions, no function calls) containing the output "
                "when executing the provided code on the given input, even if the function is incorrect or "
                "incomplete. Do NOT output any extra information. ")
_INPUT_TASK = ("You will be given a function f and an output in the form f(??) == output. ")


def output_prompt(code: str, input: str, cot: bool = False) -> str:
    """CRUXEval's `make_direct_output_prompt` (or `make_cot_output_prompt`) for one problem."""
    if cot:
        return (f"{_OUTPUT_TASK}Execute the program step by step before arriving at an answer, and provide the full "
                "assertion with the correct output in [ANSWER] and [/ANSWER] tags, following the examples.\n\n"
                "[PYTHON]\ndef f(s):\n    s = s + s\n    return \"b\" + s + \"a\"\nassert f(\"hi\") == ??\n[/PYTHON]\n"
                "[THOUGHT]\nLet's execute the code step by step:\n\n"
                "1. The function f is defined, which takes a single argument s.\n"
                "2. The function is called with the argument \"hi\", so within the function, s is initially \"hi\".\n"
                "3. Inside the function, s is concatenated with itself, so s becomes \"hihi\".\n"
                "4. The function then returns a new string that starts with \"b\", followed by the value of s (which "
                "is now \"hihi\"), and ends with \"a\".\n"
                "5. The return value of the function is therefore \"bhihia\".\n[/THOUGHT]\n"
                "[ANSWER]\nassert f(\"hi\") == \"bhihia\"\n[/ANSWER]\n\n"
                f"[PYTHON]\n{code}\nassert f({input}) == ??\n[/PYTHON]\n[THOUGHT]\n")
    return (f"{_OUTPUT_TASK}Provide the full assertion with the correct output in [ANSWER] and [/ANSWER] tags, "
            "following the examples.\n\n"
            "[PYTHON]\ndef f(n):\n    return n\nassert f(17) == ??\n[/PYTHON]\n"
            "[ANSWER]\nassert f(17) == 17\n[/ANSWER]\n\n"
            "[PYTHON]\ndef f(s):\n    return s + \"a\"\nassert f(\"x9j\") == ??\n[/PYTHON]\n"
            "[ANSWER]\nassert f(\"x9j\") == \"x9ja\"\n[/ANSWER]\n\n"
            f"[PYTHON]\n{code}\nassert f({input}) == ??\n[/PYTHON]\n[ANSWER]\n")


def input_prompt(code: str, output: str, cot: bool = False) -> str:
    """CRUXEval's `make_direct_input_prompt` (or `make_cot_input_prompt`) for one problem."""
    if cot:
        return (f"{_INPUT_TASK}Your task is to find any input such that executing f on the input leads to the given "
                "output. There may be multiple answers, but only output one. First, think step by step. You MUST "
                "surround the answer with [ANSWER] and [/ANSWER] tags. Express your answer as a passing assertion "
                "containing the input and the given output.\n\n"
                "[PYTHON]\ndef f(x):\n    return x + 1\nassert f(??) == 17\n[/PYTHON]\n"
                "[THOUGHT]\nTo find an input such that executing f on the input leads to the given output, we can "
                "work backwards from the given assertion. We know that f(??) == 17. \n\n"
                "Since the function f(x) returns x + 1, for f(??) to be equal to 17, the value of ?? should be 16. \n"
                "[/THOUGHT]\n[ANSWER]\nassert f(16) == 17\n[/ANSWER]\n\n"
                f"[PYTHON]\n{code}\nassert f(??) == {output}\n[/PYTHON]\n[THOUGHT]\n")
    return (f"{_INPUT_TASK}Find any input such that executing f on the input leads to the given output. There may be "
            "multiple answers, but you should only output one. In [ANSWER] and [/ANSWER] tags, complete the "
            "assertion with one such input that will produce the output when executing the function.\n\n"
            "[PYTHON]\ndef f(my_list):\n    count = 0\n    for i in my_list:\n        if len(i) % 2 == 0:\n"
            "            count += 1\n    return count\nassert f(??) == 3\n[/PYTHON]\n"
            "[ANSWER]\nassert f([\"mq\", \"px\", \"zy\"]) == 3\n[/ANSWER]\n\n"
            "[PYTHON]\ndef f(s1, s2):\n    return s1 + s2\nassert f(??) == \"banana\"\n[/PYTHON]\n"
            "[ANSWER]\nassert f(\"ba\", \"nana\") == \"banana\"\n[/ANSWER]\n\n"
            f"[PYTHON]\n{code}\nassert f(??) == {output}\n[/PYTHON]\n[ANSWER]\n")


# ---- reading the prediction (text only: nothing here runs it) ---------------------------------

def prediction(answer: str, mode: str, cot: bool = False) -> str:
    """The predicted output (an expression) or input (a call `f(...)`) in an answer, as CRUXEval's
    `postprocess_generation` takes it: after `[ANSWER]` (CoT), then after the first `==` (output), or
    before it and after `assert` (input). Text from `[/ANSWER]` on is dropped first (the stop
    string, should a completions file keep it)."""
    text = answer.split("[/ANSWER]")[0]
    if cot and "[ANSWER]" in text:
        text = text.split("[ANSWER]")[1].strip()
    if mode == "output":
        if "==" in text:
            text = text.split("==")[1].strip()
        return text.strip()
    if "==" in text:
        text = text.split("==")[0].strip()
    if "assert" in text:
        text = text.split("assert")[1].strip()
    return text.strip()


def chat_prediction(answer: str, mode: str) -> str:
    """The prediction in an instruct model's reply: after its `[ANSWER]` tag when it writes one (the
    prompt's examples do), from the fenced block when the answer is in one, then as `prediction`."""
    text = answer.split("[/ANSWER]")[0]
    if "[ANSWER]" in text:
        text = text.split("[ANSWER]")[1]
    if "```" in text:
        text = code_from(text, "python")
    return prediction(text, mode)


# ---- the sandboxed check -------------------------------------------------------------------------

# Output: the prediction is evaluated before the function under test exists, with only the builtins.
_OUTPUT_CHECK = '''def _dscoder_output(text):
    """The value of the predicted output: exactly one expression, seeing nothing but the builtins."""
    import builtins
    try:
        expression = compile(text, "<prediction>", "eval", dont_inherit=True)
    except SyntaxError as error:
        raise AssertionError(f"the prediction is not one Python expression: {{error}}") from None
    value = eval(expression, {{"__builtins__": builtins}})
    return lambda: value


{entry} = _dscoder_output({text})
del _dscoder_output
'''

# Input: the prediction must be `f(...)`; its arguments must not change what `f` runs with.
_INPUT_CHECK = '''def _dscoder_input(text, namespace):
    """Call the real f with the predicted arguments, evaluated in a copy of the program's namespace,
    failing when they change the builtins, f itself, or the names, modules and classes f can see."""
    import ast, builtins, types
    try:
        tree = ast.parse(text, "<prediction>", mode="eval")
    except SyntaxError as error:
        raise AssertionError(f"the prediction is not one Python expression: {{error}}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"):
        raise AssertionError("the prediction must be a call of f and nothing else, f(...): " + repr(text[:200]))
    function = namespace["f"]

    def state():
        spaces = {{"the builtins": vars(builtins), "the program's names": function.__globals__}}
        for name, value in list(function.__globals__.items()):
            if isinstance(value, (types.ModuleType, type)):
                spaces[f"{{name}}'s attributes"] = vars(value)
        seen = {{label: dict(space) for label, space in spaces.items()}}
        seen["f"] = {{key: getattr(function, key) for key in
                     ("__code__", "__defaults__", "__kwdefaults__", "__closure__", "__globals__")}}
        return seen

    def changed(before, after):
        return [label for label, items in before.items()
                if items.keys() != after[label].keys() or any(after[label][k] is not v for k, v in items.items())]

    call.func = ast.copy_location(ast.Name("_dscoder_arguments", ast.Load()), call.func)
    scope = dict(namespace)
    scope["_dscoder_arguments"] = lambda *args, **kwargs: (args, kwargs)
    before = state()
    args, kwargs = eval(compile(tree, "<prediction>", "eval", dont_inherit=True), scope)
    after = state()
    touched = changed(before, after)
    if touched:
        raise AssertionError(f"evaluating the predicted input changed {{', '.join(touched)}}: an input must not "
                             f"alter the program")
    value = function(*args, **kwargs)
    touched = changed({{k: before[k] for k in ("the builtins", "f")}}, state())
    if touched:
        raise AssertionError(f"the predicted input changed {{', '.join(touched)}} while f ran")
    return value


def {entry}():
    return _dscoder_input({text}, globals())
'''


def program(code: str, expected: str, predicted: str, mode: str) -> str:
    """The sandboxed program judging `predicted` (model text, carried as a string literal) against
    `expected` (the dataset's output, a literal): passes when `f(input) == expected`."""
    checks = f"\nassert {ENTRY}() == {expected}, 'the prediction does not give the expected output'\n"
    if mode == "output":
        solution = _OUTPUT_CHECK.format(entry=ENTRY, text=repr(predicted)) + "\n" + code
    else:
        solution = code + "\n\n\n" + _INPUT_CHECK.format(entry=ENTRY, text=repr(predicted))
    return harness.program("python", solution, checks, guard=(ENTRY,))


def _rows(data: Path | None) -> list[dict]:
    path = data_file("cruxeval", "cruxeval.jsonl", data=data)
    rows = []
    for number, row in json_lines(path):
        if not all(isinstance(row.get(k), str) for k in ("id", "code", "input", "output")):
            raise UserError(f"{path}:{number}: a CRUXEval problem needs string fields id, code, input and output")
        rows.append(row)
    return rows


def problems(subset: str = "output", data: Path | None = None) -> list[Problem]:
    if subset not in SUBSETS:
        raise UserError(f"CRUXEval has no subset {subset!r}; choose from {', '.join(SUBSETS)}")
    mode, _, cot = subset.partition("-")
    cot = bool(cot)
    problems = []
    for row in _rows(data):
        code, given, expected = row["code"], row["input"], row["output"]
        prompt = output_prompt(code, given, cot) if mode == "output" else input_prompt(code, expected, cot)

        def base_program(completion: str, code=code, expected=expected) -> str:
            return program(code, expected, prediction(completion, mode, cot), mode)

        def answer_program(answer: str, code=code, expected=expected) -> str:
            return program(code, expected, chat_prediction(answer, mode), mode)

        # A correct base completion: the assertion line (after the CoT's reasoning, its [ANSWER] tag).
        reference = ("[/THOUGHT]\n[ANSWER]\n" if cot else "") + f"assert f({given}) == {expected}\n"
        problems.append(Problem(row["id"], "python", prompt, base_program, STOPS, prompt, answer_program,
                                reference=reference, max_new_tokens=MAX_NEW_TOKENS[cot], group=subset,
                                extra={"code": code, "input": given, "output": expected}))
    return problems
