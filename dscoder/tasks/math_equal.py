"""Is a model's final math answer the reference answer, by value? (MATH, GSM8K and GSM-Hard CoT)

DeepSeek-Coder-V2 scores math the way DeepSeekMath does: the model reasons step by step and
puts its final answer in `\\boxed{}`; the last box is compared with the reference's boxed answer
after the usual MATH normalisation of LaTeX strings (Hendrycks' `is_equiv`, extended by
DeepSeekMath and Qwen2.5-Math's `math_equal`) and, when both sides parse, by sympy equality.
This module is our own version of that comparison. What it does, in order (`equal`):

1. Both answers are normalised (`normalize`): `\\left`/`\\right`, spacing commands, `\\dfrac`,
   `\\frac12`, `\\sqrt2`, `a^2` -> `a^{2}`, units in `\\text{}` and a trailing unit word, degree
   signs, `$`, `%`, thousands separators, a leading `x=`, a trailing full stop, `\\text{(A)}`.
   Equal strings are equal.
2. Plain numbers (integers, decimals, `\\frac{a}{b}`, `a/b`, mixed numbers) are compared as
   exact fractions: `0.5` is `\\frac12`, `10\\%` is `10`. When one side is written as a decimal
   with a fractional part, a relative difference of at most 1e-4 is accepted (`0.3333` is
   `\\frac13`); integers are never "close" to other integers (10000 is not 10001, unlike a bare
   relative tolerance).
3. Structures are compared part by part: matrices cell by cell, tuples and intervals in order
   with the same brackets (`(1,2]` is not `(1,2)`), unions piece by piece, bare comma lists in
   any order ("enter all solutions"), equations up to a constant factor.
4. Otherwise both sides are parsed into sympy expressions by the small LaTeX parser below
   (fractions, roots, powers, implicit products, `\\pi`, trigonometric functions, `i`) and are
   equal when `simplify(a - b) == 0`, or when their difference is zero to 50 digits (at a few
   points, when there are variables); with a decimal on either side, a relative 1e-4 suffices.

Why this runs in the sandbox, not in the evaluating process: the answer is model-written text.
Nothing here evaluates it as code (no `eval`, `sympify` or `parse_expr`: the parser builds sympy
objects from tokens, and rejects anything it does not know), but sympy can still be asked for
something that takes unbounded time or memory (`9^{9^{9^{9}}}`, a huge nested radical). So the
judging program (`dscoder.tasks.math`) carries this module's source with the completion and the
reference as string literals and runs under the sandbox's limits; a hostile answer costs at
most one program's timeout. The module imports only the standard library at load (sympy lazily,
only for step 4), because it runs there with nothing of dscoder importable.
"""

import math
import re
from fractions import Fraction

REL_TOL = 1e-4  # decimals against exact values (DeepSeekMath and Qwen2.5-Math use 1e-3 absolute / 1e-4 relative)
MAX_SYMBOLIC_CHARS = 400  # longer answers are compared as strings and numbers only
MAX_DIGITS = 1000  # longer integer literals are not numbers we compare
MAX_POWER_DIGITS = 5000  # a numeric power whose result would have more digits is refused, not computed


# ---- extracting the answer ---------------------------------------------------------------------------

def _closing_braces(text):
    """{index of each `{`: index of the `}` that closes it}, in one pass (escaped `\\{`, `\\}` are not braces)."""
    closing, open_at = {}, []
    for at, c in enumerate(text):
        if c in "{}" and at > 0 and text[at - 1] == "\\":
            continue
        if c == "{":
            open_at.append(at)
        elif c == "}" and open_at:
            closing[open_at.pop()] = at
    return closing


def boxed_answers(text):
    """The contents of every complete `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed x`) in `text`, in order.

    Braces are balanced; a box left open (a completion cut short) is not an answer. Linear in the
    text's length however many boxes it opens."""
    found, closing = [], None
    for match in re.finditer(r"\\(?:boxed|fbox)(?![a-zA-Z])", text):
        at = match.end()
        while at < len(text) and text[at] == " ":
            at += 1
        if at < len(text) and text[at] == "{":
            closing = _closing_braces(text) if closing is None else closing
            if at in closing:
                found.append(text[at + 1:closing[at]])
        elif at > match.end():  # `\\boxed 5`: up to the end of the math or of the line
            found.append(re.match(r"[^$\n]*", text[at:at + 1000]).group())
    return found


def last_boxed(text):
    """The final answer of a solution: its last complete box (None when it has none)."""
    answers = boxed_answers(text)
    return answers[-1] if answers else None


# ---- normalising LaTeX strings -------------------------------------------------------------------------

def _group_end(s, start):
    """The index of the `}` closing the `{` at `start` (None when it is not closed)."""
    depth = 0
    for at in range(start, len(s)):
        if s[at] == "{":
            depth += 1
        elif s[at] == "}":
            depth -= 1
            if depth == 0:
                return at
    return None


def _unwrap(s, commands):
    """`\\command{X}` -> `X` for each command named (balanced braces)."""
    pattern = re.compile(r"\\(?:" + "|".join(commands) + r")\s*\{")
    while True:
        match = pattern.search(s)
        if match is None:
            return s
        end = _group_end(s, match.end() - 1)
        if end is None:
            return s
        s = s[:match.start()] + s[match.end():end] + s[end + 1:]


def _argument(s, at):
    """(the argument of a macro starting at `at`, braced, and where it ends): `{...}`, a command or a char."""
    if at >= len(s):
        return None, at
    if s[at] == "{":
        end = _group_end(s, at)
        return (None, at) if end is None else (s[at:end + 1], end + 1)
    if s[at] == "\\":
        match = re.match(r"\\[a-zA-Z]+", s[at:])
        if match:
            return "{" + match.group() + "}", at + match.end()
    return "{" + s[at] + "}", at + 1


def _brace_arguments(s, macro, count):
    """`\\frac12` -> `\\frac{1}{2}`, `\\sqrt2` -> `\\sqrt{2}`: every argument of `macro` braced."""
    out, at = [], 0
    pattern = re.compile(re.escape(macro) + r"(?![a-zA-Z])")
    while True:
        match = pattern.search(s, at)
        if match is None:
            out.append(s[at:])
            return "".join(out)
        out.append(s[at:match.end()])
        at = match.end()
        if macro == "\\sqrt" and at < len(s) and s[at] == "[":  # \sqrt[3]{x}: the index stays as it is
            close = s.find("]", at)
            if close == -1:
                continue
            out.append(s[at:close + 1])
            at = close + 1
        for _ in range(count):
            argument, after = _argument(s, at)
            if argument is None:
                break
            out.append(argument)
            at = after


def _brace_scripts(s):
    """`a^2` -> `a^{2}`, `x_1` -> `x_{1}`, `2^\\pi` -> `2^{\\pi}`: one canonical form for a single-token script."""
    s = re.sub(r"([\^_])(\\[a-zA-Z]+)", r"\1{\2}", s)
    return re.sub(r"([\^_])([0-9a-zA-Z])", r"\1{\2}", s)


_UNICODE = {"\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00b7": "\\cdot ", "\u221a": "\\sqrt",
            "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ", "\u00b0": "",
            "\u2032": "'", "\u00a0": " "}
_SPACING = r"\\[,;:! ]|\\q?quad(?![a-zA-Z])|~|\\(?:displaystyle|textstyle)(?![a-zA-Z])"
_SIZES = r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])"
_TEXT = ("text", "textrm", "textbf", "textit", "textnormal", "mathrm", "mathbf", "mathit", "mbox", "operatorname",
         "boxed", "fbox", "hbox")
_UNIT_WORD = r"(?:[a-zA-Z]{2,}\.?)"


def normalize(answer, unknown=True):
    """The answer as a canonical string (see the module docstring, step 1); `unknown=False` keeps a
    leading `y =` (so that two equations of a line can be compared as equations)."""
    s = str(answer)
    for old, new in _UNICODE.items():
        s = s.replace(old, new)
    s = s.replace("\n", " ").strip()
    # spacing commands (a matrix's `\\\\` row break is kept: the alternation consumes it first)
    s = re.sub(r"\\\\|" + _SPACING, lambda m: m.group() if m.group() == "\\\\" else " ", s)
    s = re.sub(_SIZES, "", s)
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![a-zA-Z])", r"\\binom", s)
    s = re.sub(r"\\(?:lvert|rvert|vert)(?![a-zA-Z])", "|", s)
    s = re.sub(r"\\(?:leq|leqslant)(?![a-zA-Z])", r"\\le", s)
    s = re.sub(r"\\(?:geq|geqslant)(?![a-zA-Z])", r"\\ge", s)
    s = re.sub(r"\\varnothing(?![a-zA-Z])", r"\\emptyset", s)
    # degrees
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![a-zA-Z])|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])", "", s)
    # money and percent
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    # a unit in text at the end ("5\text{ cm}^2", "162\text{ minutes}"), when something is left
    unitless = re.sub(r"\\(?:text|textrm|mbox|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?[23]\}?)?\s*$", "", s).strip()
    if unitless and unitless != s and not unitless.endswith(("=", "\\")):
        s = unitless
    s = _unwrap(s, _TEXT).strip()
    # "x = 3", "k=\frac12", "x \in [1,2]": the value of a single named unknown
    match = re.fullmatch(r"(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?[0-9a-zA-Z]+\}?)?'*\s*(?:=|\\in(?![a-zA-Z]))(.+)", s)
    if match and unknown and "=" not in match.group(1):
        s = match.group(1).strip()
    # a unit word after a number ("18 dollars", "5 cm"): only in that shape, and while the words are words
    match = re.fullmatch(r"([-+]?[0-9][0-9.,]*)\s+" + _UNIT_WORD + r"(?:\s+" + _UNIT_WORD + r")*(?:\^\{?[23]\}?)?", s)
    if match:
        s = match.group(1)
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"(?:\\\\|\.)+$", "", s)  # a trailing full stop or line break
    s = re.sub(r"(?<![0-9])\.([0-9])", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"([0-9])\{,\}([0-9]{3})", r"\1\2", s)  # 1{,}000
    if re.fullmatch(r"[-+]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"([0-9])\.0+(?![0-9])", r"\1", s)  # 2.0 -> 2, 2.50 stays (numbers compare it)
    s = re.sub(r"infinity|(?<!\\)\binf\b", r"\\infty", s)
    s = _brace_arguments(s, "\\frac", 2)
    s = _brace_arguments(s, "\\binom", 2)
    s = _brace_arguments(s, "\\sqrt", 1)
    s = _brace_scripts(s)
    match = re.fullmatch(r"([-+]?)([0-9]+)/([0-9]+)", s)
    if match:
        s = f"{match.group(1)}\\frac{{{match.group(2)}}}{{{match.group(3)}}}"
    match = re.fullmatch(r"\(([A-Za-z])\)", s)  # (A): a multiple-choice letter
    if match:
        s = match.group(1)
    return s


# ---- plain numbers ------------------------------------------------------------------------------------

def number(s):
    """(exact value, written as a decimal with a fractional part) of a normalised plain number, else None."""
    match = re.fullmatch(r"([-+]?)([0-9]+)\\frac\{([0-9]+)\}\{([0-9]+)\}", s)  # a mixed number, 2\frac{1}{2}
    if match and int(match.group(4)) != 0 and len(s) < MAX_DIGITS:
        sign = -1 if match.group(1) == "-" else 1
        return sign * (int(match.group(2)) + Fraction(int(match.group(3)), int(match.group(4)))), False
    match = re.fullmatch(r"([-+]?)\\frac\{([-+]?[0-9.]+)\}\{([-+]?[0-9.]+)\}", s)
    if match:
        top, bottom = number(match.group(2)), number(match.group(3))
        if top is None or bottom is None or bottom[0] == 0:
            return None
        value = top[0] / bottom[0]
        return (-value if match.group(1) == "-" else value), top[1] or bottom[1]
    if len(s) > MAX_DIGITS or not re.fullmatch(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)", s):
        return None
    try:
        value = Fraction(s.rstrip("."))
    except (ValueError, ZeroDivisionError):
        return None
    return value, "." in s and value.denominator != 1


def numbers_equal(a, b):
    """Exact equality of (value, decimal) pairs, or closeness within REL_TOL when one is a non-integer decimal."""
    if a[0] == b[0]:
        return True
    if not (a[1] or b[1]):
        return False
    return abs(a[0] - b[0]) <= REL_TOL * max(abs(a[0]), abs(b[0]))


# ---- a LaTeX-subset parser into sympy objects (no eval) ----------------------------------------------

class Unparsable(Exception):
    """The text is not an expression this parser knows (so it is compared as a string only)."""


FUNCTIONS = ("sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
             "log", "ln", "exp")
GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
         "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
         "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega")
COMMANDS = FUNCTIONS + GREEK + ("frac", "sqrt", "binom", "pi", "infty", "cdot", "times", "div", "lfloor", "rfloor",
                                "lceil", "rceil")
PLAIN_FUNCTIONS = ("sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi")  # written without a backslash


def tokenize(s):
    """Tokens (kind, text): num, letter, cmd, op. A run of letters after a backslash is split at the
    longest known command (`\\pir` is `\\pi` then `r`, as spaces were removed)."""
    tokens, at = [], 0
    while at < len(s):
        c = s[at]
        if c.isspace():
            at += 1
        elif c.isdigit() or (c == "." and at + 1 < len(s) and s[at + 1].isdigit()):
            match = re.match(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", s[at:])
            tokens.append(("num", match.group()))
            at += match.end()
        elif c.isascii() and c.isalpha():
            tokens.append(("letter", c))
            at += 1
        elif c == "\\":
            match = re.match(r"[a-zA-Z]+", s[at + 1:])
            if match is None:
                raise Unparsable(f"\\{s[at + 1:at + 2]}")
            word = match.group()
            known = max((name for name in COMMANDS if word.startswith(name)), key=len, default=None)
            if known is None:
                raise Unparsable(f"\\{word}")
            tokens.append(("cmd", known))
            at += 1 + len(known)
        elif c in "+-*/^_()[]{}|!":
            tokens.append(("op", c))
            at += 1
        else:
            raise Unparsable(c)
    return tokens


class Parser:
    """Recursive descent over `tokenize`'s tokens, building sympy expressions. Precedence: sums,
    products (explicit, `\\cdot`, `\\times`, `\\div`, `/` and implicit), unary signs, powers (right
    associative, binding tighter than a unary minus), factorials, atoms."""

    def __init__(self, text):
        try:
            import sympy
        except ImportError:  # comes with torch; without it, answers compare as strings and numbers only
            raise Unparsable("sympy is not installed") from None
        self.sp = sympy
        self.tokens = tokenize(text)
        self.at = 0
        self.in_abs = 0
        self.decimal = False  # a decimal literal was read: numeric closeness applies

    def parse(self):
        if not self.tokens:
            raise Unparsable("empty")
        value = self.sum()
        if self.at != len(self.tokens):
            raise Unparsable(f"unexpected {self.tokens[self.at][1]!r}")
        return value

    def peek(self, offset=0):
        at = self.at + offset
        return self.tokens[at] if at < len(self.tokens) else (None, None)

    def take(self, kind=None, text=None):
        token = self.peek()
        if token[0] is None or (kind and token[0] != kind) or (text and token[1] != text):
            raise Unparsable(f"expected {text or kind}, found {token[1]!r}")
        self.at += 1
        return token

    def sum(self):
        value = self.product()
        while self.peek() in (("op", "+"), ("op", "-")):
            sign = self.take()[1]
            right = self.product()
            value = value + right if sign == "+" else value - right
        return value

    def starts_atom(self):
        kind, text = self.peek()
        if kind in ("num", "letter"):
            return True
        if kind == "op":
            return text in "([{" or (text == "|" and not self.in_abs)
        return kind == "cmd" and text not in ("cdot", "times", "div", "rfloor", "rceil")

    def product(self):
        value = self.signed()
        while True:
            token = self.peek()
            if token in (("op", "*"), ("cmd", "cdot"), ("cmd", "times")):
                self.take()
                value = value * self.signed()
            elif token in (("op", "/"), ("cmd", "div")):
                self.take()
                value = value / self.signed()
            elif self.starts_atom():
                value = value * self.power()
            else:
                return value

    def signed(self):
        if self.peek() == ("op", "-"):
            self.take()
            return -self.signed()
        if self.peek() == ("op", "+"):
            self.take()
            return self.signed()
        return self.power()

    def power(self):
        base = self.factorial()
        if self.peek() != ("op", "^"):
            return base
        self.take()
        if self.peek() == ("op", "{"):
            exponent = self.group("{", "}")
        elif self.peek() == ("op", "-"):
            self.take()
            exponent = -self.power()
        else:
            exponent = self.power()
        return self.pow(base, exponent)

    def pow(self, base, exponent):
        """base^exponent, refused (not computed) when the exponent is a number too large: sympy would
        compute `10^{10^{10}}` (or `\\sqrt{2}^{10^9}`) as an exact integer."""
        if exponent.is_Number and abs(exponent) > 10 * MAX_POWER_DIGITS:
            raise Unparsable("an exponent too large to compute")
        if base.is_Number and exponent.is_Integer and \
                abs(int(exponent)) * math.log10(abs(base.p) + abs(base.q) + 1) > MAX_POWER_DIGITS:
            raise Unparsable("a power too large to compute")
        return self.sp.Pow(base, exponent)

    def factorial(self):
        value = self.atom()
        while self.peek() == ("op", "!"):
            self.take()
            if not (value.is_Integer and 0 <= value <= 1000):
                raise Unparsable("factorial of something other than a small integer")
            value = self.sp.factorial(value)
        return value

    def group(self, open_, close):
        self.take("op", open_)
        value = self.sum()
        self.take("op", close)
        return value

    def argument(self):
        """A macro's argument: a braced group, or one token (`\\frac12` was braced by normalize)."""
        if self.peek() == ("op", "{"):
            return self.group("{", "}")
        return self.atom()

    def atom(self):
        sp = self.sp
        kind, text = self.peek()
        if kind == "num":
            self.take()
            if len(text) > MAX_DIGITS:
                raise Unparsable("a number too long")
            if "." in text:
                self.decimal = True
            return sp.Rational(text.rstrip(".") or "0")
        if kind == "letter":
            return self.letters()
        if kind == "op" and text in "([{":
            return self.group(text, {"(": ")", "[": "]", "{": "}"}[text])
        if kind == "op" and text == "|" and not self.in_abs:
            self.take()
            self.in_abs += 1
            value = self.sum()
            self.in_abs -= 1
            self.take("op", "|")
            return sp.Abs(value)
        if kind != "cmd":
            raise Unparsable(f"unexpected {text!r}")
        self.take()
        if text == "frac":
            top = self.argument()
            return top / self.argument()
        if text == "binom":
            top, bottom = self.argument(), self.argument()
            if any(x.is_Number and abs(x) > 10 * MAX_POWER_DIGITS for x in (top, bottom)):
                raise Unparsable("a binomial coefficient too large to compute")
            return sp.binomial(top, bottom)
        if text == "sqrt":
            index = self.group("[", "]") if self.peek() == ("op", "[") else sp.Integer(2)
            return sp.root(self.argument(), index)
        if text == "pi":
            return sp.pi
        if text == "infty":
            return sp.oo
        if text in GREEK:
            return sp.Symbol(text)
        if text in ("lfloor", "lceil"):
            value = self.sum()
            self.take("cmd", "rfloor" if text == "lfloor" else "rceil")
            return sp.floor(value) if text == "lfloor" else sp.ceiling(value)
        if text in FUNCTIONS:
            return self.function(text)
        raise Unparsable(f"\\{text}")

    def letters(self):
        """A letter (a variable; `i` the imaginary unit), `x_{1}` a subscripted variable, or a
        function name written without a backslash. Three or more letters that name nothing are
        a word, not a product of variables: not parsed."""
        run = ""
        while self.peek(len(run))[0] == "letter":
            run += self.peek(len(run))[1]
        for name in sorted(PLAIN_FUNCTIONS, key=len, reverse=True):
            if run.startswith(name) and len(run) <= len(name) + 1:  # `sqrt`, `sinx`; not `since`
                self.at += len(name)
                if name == "pi":
                    return self.sp.pi
                if name == "sqrt":
                    return self.sp.sqrt(self.argument())
                return self.function(name)
        if len(run) >= 3:
            raise Unparsable(f"a word {run!r}")
        letter = self.take()[1]
        if self.peek() == ("op", "_"):
            self.take()
            if self.peek() == ("op", "{"):
                start = self.at
                self.group("{", "}")
                subscript = "".join(t for _, t in self.tokens[start + 1:self.at - 1])
            else:
                subscript = self.take()[1]
            return self.sp.Symbol(f"{letter}_{subscript}")
        return self.sp.I if letter == "i" else self.sp.Symbol(letter)

    def function(self, name):
        """`\\sin x`, `\\sin^2(x)`, `\\log_2 8`, `\\ln(x)`."""
        sp = self.sp
        base = None
        if name == "log" and self.peek() == ("op", "_"):
            self.take()
            base = self.argument()
        exponent = None
        if self.peek() == ("op", "^"):
            self.take()
            exponent = self.argument()
        if self.peek()[0] == "op" and self.peek()[1] in "({":
            argument = self.group(self.peek()[1], {"(": ")", "{": "}"}[self.peek()[1]])
        else:
            argument = self.power()
        table = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
                 "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh,
                 "tanh": sp.tanh, "ln": sp.log, "exp": sp.exp}
        value = sp.log(argument, base) if name == "log" and base is not None else \
            sp.log(argument) if name == "log" else table[name](argument)
        return value if exponent is None else self.pow(value, exponent)


def parse(text):
    """(sympy expression, whether a decimal literal was read) for a normalised answer; Unparsable if not one."""
    if len(text) > MAX_SYMBOLIC_CHARS:
        raise Unparsable("too long to compare symbolically")
    parser = Parser(text)
    try:
        return parser.parse(), parser.decimal
    except (TypeError, ValueError, ZeroDivisionError, RecursionError, AttributeError) as e:
        raise Unparsable(str(e)) from None


def _zero(sp, value, scale):
    """Whether `value` is zero to 50 digits of `scale`."""
    try:
        number = complex(sp.N(value, 60))
    except (TypeError, ValueError):
        return False
    return abs(number) <= 1e-50 * max(1.0, abs(scale)) and not math.isnan(number.real)


def _same_expression(a, b, decimal):
    """The sympy step: simplify(a - b) == 0; else zero to 50 digits (at three points, with variables);
    with a decimal on either side, a relative REL_TOL."""
    import sympy as sp

    if a == b:
        return True
    if a.has(sp.oo, -sp.oo, sp.zoo, sp.nan) or b.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        return False
    difference = a - b
    try:
        if sp.simplify(difference) == 0:
            return True
    except (TypeError, ValueError, AttributeError, RecursionError, ZeroDivisionError):
        pass
    symbols = sorted(difference.free_symbols, key=str)
    points = [{}] if not symbols else [
        {s: (-1) ** k * sp.Rational(7 + 5 * i + 3 * k, 11 + 2 * k) for i, s in enumerate(symbols)} for k in range(3)]
    for point in points:
        try:
            left, right = complex(sp.N(a.subs(point), 60)), complex(sp.N(b.subs(point), 60))
        except (TypeError, ValueError, ZeroDivisionError):
            return False
        if any(math.isnan(x.real) or math.isinf(x.real) for x in (left, right)):
            return False
        if decimal and not symbols:
            return abs(left - right) <= REL_TOL * max(abs(left), abs(right))
        if not _zero(sp, difference.subs(point), abs(left) + abs(right)):
            return False
    return True


# ---- structures -----------------------------------------------------------------------------------------

def split_top(s, separator):
    """`s` split at `separator` outside brackets and braces."""
    parts, depth, start, at = [], 0, 0, 0
    while at < len(s):
        c = s[at]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(separator, at):
            parts.append(s[start:at])
            at += len(separator)
            start = at
            continue
        at += 1
    parts.append(s[start:])
    return parts


def _matrix(s):
    match = re.fullmatch(r"\\begin\{([pbv]?matrix)\}(.*)\\end\{\1\}", s)
    if match is None:
        return None
    rows = [row for row in match.group(2).split("\\\\") if row]
    return [row.split("&") for row in rows]


def _bracketed(s):
    """(open, close, inner) when `s` is one bracketed group `(...)`/`[...]` (an interval or tuple)."""
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        depth = 0
        for at, c in enumerate(s):
            depth += c in "([{"
            depth -= c in ")]}"
            if depth == 0 and at < len(s) - 1:
                return None
        return s[0], s[-1], s[1:-1]
    return None


def _set(s):
    return s[2:-2] if s.startswith("\\{") and s.endswith("\\}") else None


def _all_equal(xs, ys):
    return len(xs) == len(ys) and all(_equal(x, y) for x, y in zip(xs, ys))


def _any_order(xs, ys):
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        hit = next((k for k, y in enumerate(left) if _equal(x, y)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _equation_sides(s):
    parts = split_top(s, "=")
    return parts if len(parts) == 2 and all(parts) else None


def _equal(a, b):
    """Equality of two normalised answers (steps 1-4 of the module docstring)."""
    if a == b:
        return True
    if not a or not b:
        return False
    x, y = number(a), number(b)
    if x is not None and y is not None:
        return numbers_equal(x, y)
    ma, mb = _matrix(a), _matrix(b)
    if ma is not None or mb is not None:
        return ma is not None and mb is not None and len(ma) == len(mb) and all(
            _all_equal(ra, rb) for ra, rb in zip(ma, mb))
    ua, ub = split_top(a, "\\cup"), split_top(b, "\\cup")
    if len(ua) > 1 or len(ub) > 1:
        return _all_equal(ua, ub)
    sa, sb = _set(a), _set(b)
    if sa is not None or sb is not None:
        return _any_order(split_top(sa if sa is not None else a, ","), split_top(sb if sb is not None else b, ","))
    ba, bb = _bracketed(a), _bracketed(b)
    ca, cb = split_top(a, ","), split_top(b, ",")
    if ba and bb and ("," in ba[2] or "," in bb[2]):  # tuples, intervals: in order, the same brackets
        return ba[:2] == bb[:2] and _all_equal(split_top(ba[2], ","), split_top(bb[2], ","))
    if (ba and ba[:2] == ("(", ")") and len(cb) > 1) or (bb and bb[:2] == ("(", ")") and len(ca) > 1):
        return _all_equal(split_top(ba[2], ",") if ba else ca, split_top(bb[2], ",") if bb else cb)  # (1,2) vs 1,2
    if len(ca) > 1 or len(cb) > 1:  # "enter all the solutions, separated by commas": any order
        return _any_order(ca, cb)
    ea, eb = _equation_sides(a), _equation_sides(b)
    if (ea is None) != (eb is None):
        return False
    try:
        if ea is not None:
            (left_a, _), (right_a, _) = parse(ea[0]), parse(ea[1])
            (left_b, _), (right_b, _) = parse(eb[0]), parse(eb[1])
            return _same_equation(left_a - right_a, left_b - right_b)
        (x, decimal_x), (y, decimal_y) = parse(a), parse(b)
    except Unparsable:
        return False
    return _same_expression(x, y, decimal_x or decimal_y)


def _same_equation(f, g):
    """f = 0 and g = 0 are the same equation: f is a nonzero constant multiple of g."""
    import sympy as sp

    try:
        if _same_expression(f, g, False) or _same_expression(f, -g, False):
            return True
        ratio = sp.simplify(f / g)
        return not ratio.free_symbols and ratio != 0 and ratio.is_finite is True
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, RecursionError):
        return False


def equal(answer, reference):
    """Whether `answer` (a model's boxed answer) is the reference answer, by value: `x = 3` is 3, and
    `2x+3y=6` is `y = -\\frac{2}{3}x + 2` (compared as equations, when both are)."""
    if _equal(normalize(answer), normalize(reference)):
        return True
    return "=" in answer and "=" in reference and _equal(normalize(answer, False), normalize(reference, False))


def check(completion, reference):
    """The verdict of the judging program: passes (returns) when the completion's last boxed answer
    equals `reference`, else raises AssertionError naming both."""
    answer = last_boxed(completion)
    if answer is None:
        raise AssertionError("no complete \\boxed{...} answer in the completion")
    if not equal(answer, reference):
        raise AssertionError(f"answer {answer!r} (normalised {normalize(answer)!r}) is not the reference "
                             f"{reference!r} (normalised {normalize(reference)!r})")
