"""Where each benchmark data file comes from: a public URL pinned to a commit, its SHA-256 and size.

The harness reads its data from a folder laid out like the project's `shared/data` (the relative
paths below). A clone with no such folder beside it downloads the files it needs from these URLs
(`dscoder.tasks.fetch`); a file is kept only when its SHA-256 is the one written here, so a moved
branch, a compromised mirror or a truncated transfer can never change what a benchmark measures.

Each URL names a commit, never a branch. How each commit was found is said beside it:
- "README": the provenance table of `shared/data/README.md` (repo@commit, checked there with
  `git hash-object`); the SHA-256 here are the ones that README lists.
- "index": the only stored version of that path in a public code index, at that commit; the
  index holds no blob ids, so the match with the shared copy was checked by its length in
  characters and its final rows. The SHA-256 is that of the shared copy, and it is what
  decides at download time.
A file with `url=None` has no public copy we could pin honestly; it comes only from `--data DIR`,
`DSCODER_DATA` or a mirror (`DSCODER_DATA_URL`).

Sizes are in bytes. `benchmarks` are the names of `dscoder eval BENCH` that read the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from dscoder.errors import UserError


@dataclass(frozen=True)
class Source:
    path: str  # relative to the data folder (as in shared/data)
    size: int
    sha256: str
    benchmarks: tuple[str, ...]
    url: str | None  # raw file at a pinned commit; None: not pinned (only --data / DSCODER_DATA / a mirror)
    origin: str  # where the URL's commit was found (see the module docstring)


def _raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


DEEPSEEK_CODER = "deepseek-ai/DeepSeek-Coder"
# shared/data/README.md: the commit of its newer DeepSeek-Coder files (9 MultiPL-E languages, LeetCode,
# MATH, GSM-Hard).
DSC_README = "2f9fd85927c669dae3c0fbb2d607274023af243e"
# The code index's stored versions of Evaluation/HumanEval/data/*: its only version of each path
# is at one of these commits (humaneval-python has 2 versions; the one at 0e3ea03 is this file).
DSC_0E3EA03 = "0e3ea036809378139b453232558cc1f28cdaa326"
DSC_A4BA628 = "a4ba628dfdc2e56f1fd6cdd86df103ce4d3df73e"
# The Rust file is stored there as humaneval-rust.jsonl (306,470 characters, the same final rows as
# shared's humaneval-rs.jsonl); no humaneval-rs.jsonl path is stored at any commit.
DSC_D303887 = "d3038879186777617a28c51591e1438ac42477e6"
# openai/human-eval-infilling: the one commit the index holds; other public projects pin the same raw
# URL for HumanEval-SingleLineInfilling.jsonl.gz, and one records the SHA-256 below for it at this
# commit. The .gz files are binary (the index stores no text for them), so the multi-line and
# random-span-light hashes rest on the shared copies alone.
INFILLING = "88062ff9859c875d04db115b698ed4b0f0395170"
# google-research/google-research: mbpp/mbpp.jsonl at this commit has git blob id
# 96e2dc2f7dd95b7b87b38dc46e42cbed444251bb (recorded by a public pinned downloader that checks it),
# which is `git hash-object` of shared's mbpp.jsonl. The shared README names DeepSeek-Coder's
# Evaluation/MBPP/data, but the index holds only mbpp_test.jsonl there (a different, smaller file).
MBPP = "08a8d6736475776f42ffac23b2c13111a28e5795"


def _humaneval(language: str, size: int, sha256: str, commit: str, upstream: str = "") -> Source:
    name = f"humaneval-{language}.jsonl"
    origin = "README" if commit == DSC_README else "index" + (f" (upstream name {upstream})" if upstream else "")
    return Source(f"humaneval/{name}", size, sha256, ("humaneval",),
                  _raw(DEEPSEEK_CODER, commit, f"Evaluation/HumanEval/data/{upstream or name}"), origin)


SOURCES: tuple[Source, ...] = (
    # HumanEval in DeepSeek-Coder's layout. Python's set is read from the human-eval package (it
    # ships HumanEval.jsonl.gz); DeepSeek-Coder's copy is listed for tools that want the same folder.
    _humaneval("python", 342974, "0eae07adadbb00d51962fdb78b9e2a26bfa8ade85dc54eb57cae9bffed2f5c54", DSC_0E3EA03),
    _humaneval("cpp", 388688, "8717eabdf202137158c84506144b0fb1e73d5ecccbe5363ec79009ca014df629", DSC_A4BA628),
    _humaneval("java", 454059, "b21b015763452ec4f9f4e0e6425148ec331ace4da1232c8b4d441186185f6265", DSC_0E3EA03),
    _humaneval("js", 297853, "634e2eee8d6e22de07c121b972207683dd96be76256bf44bdfc1a3386b739287", DSC_A4BA628),
    _humaneval("ts", 304732, "4b1af1050c9f226335d54a8c80553c39454a525cace3e67bdcfcc9092ba02637", DSC_A4BA628),
    _humaneval("go", 432325, "7f5dfe3ff001049b1221e9d21a8119b5cbc38eb87c97fefc5d57fa7adc1df888", DSC_0E3EA03),
    _humaneval("rs", 306470, "e33f562838e973b7e6b8d76dbc1fb84b076d7426629b4cdc624f12678778d2fa", DSC_D303887,
               upstream="humaneval-rust.jsonl"),
    _humaneval("sh", 274180, "2f702106e9ce4aa7385de568d9248d6c57c90382d782b162cb9e072fbd01ccf8", DSC_0E3EA03),
    _humaneval("php", 388096, "bebd86875b1d8e65a8b7e692ed7bdf64612b44aa388825ea4dab40c7047c786b", DSC_0E3EA03),
    _humaneval("cs", 452021, "1c3fe18be10addc2d0b96311f4db192ae3232e08628d17768d889d6ab87be224", DSC_0E3EA03),
    _humaneval("swift", 344436, "e4418d6f532e4298969e727690cda80dc88b94e4abf836f8ff79ac18a737eaaa", DSC_README),
    _humaneval("r", 311904, "c2a3268ea54d2bfb8ce65bb2c808437ac0d9934c6caf99fcf75d6b6a4fb3f911", DSC_README),
    _humaneval("jl", 268754, "ef21bd920889c9c1ab0e87a825cc26bd895e7a715f569f8ba7de577f870b6815", DSC_README),
    _humaneval("d", 289365, "226938c015f90d713a3e30d8f174f4a6d2c88820cf50512379a16890dda70332", DSC_README),
    _humaneval("rkt", 312006, "083325daf55daf431ae6d6d17cf017afb18a6ec790d4c841b7c2b4752c5807ff", DSC_README),
    _humaneval("lua", 298314, "d2e91f3603f6aee63db2c2d5754d165397603a8c9bd6130842af7988b27a96fc", DSC_README),
    _humaneval("rb", 312806, "4204395b835019e32d55513325a0fad01c6d382fd1eb97b516f0458d00058302", DSC_README),
    _humaneval("scala", 384243, "482b72a16613a563755d642e37792da68471399789b069fba5b1249e831445f3", DSC_README),
    _humaneval("pl", 437506, "949048bff3eaea7ae47cd5759042c088a7c227d53c74fe95a80728fd5aefbf77", DSC_README),

    Source("mbpp/mbpp.jsonl", 563743, "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f", ("mbpp",),
           _raw("google-research/google-research", MBPP, "mbpp/mbpp.jsonl"),
           "git blob id recorded by a public pinned downloader, equal to the shared copy's"),

    Source("infilling/HumanEval-SingleLineInfilling.jsonl.gz", 75058,
           "1277073e7ddce163ef68598c2bca777f688a53df99422f097e37362090f88e1f", ("humaneval-infilling",),
           _raw("openai/human-eval-infilling", INFILLING, "data/HumanEval-SingleLineInfilling.jsonl.gz"),
           "index; other public projects pin this URL, and one records this SHA-256 for it"),
    Source("infilling/HumanEval-MultiLineInfilling.jsonl.gz", 170082,
           "2f341612eee1d35da1357a4f365e0c0b3ba6e2b62eb491e88aaefa4855af0349", ("humaneval-infilling",),
           _raw("openai/human-eval-infilling", INFILLING, "data/HumanEval-MultiLineInfilling.jsonl.gz"),
           "index (binary: SHA-256 from the shared copy only)"),
    Source("infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz", 45730,
           "1432250ecac0cb56e6f97f8faf0970419ef892a98fda7e1f5aa4c4b87209b760", ("humaneval-infilling",),
           _raw("openai/human-eval-infilling", INFILLING, "data/HumanEval-RandomSpanInfillingLight.jsonl.gz"),
           "index (binary: SHA-256 from the shared copy only)"),

    # GSM8K as DeepSeek-Coder's PAL-Math reads it (JSON lines with an `idx`). The index holds that
    # folder's gsm-hard and math files but no gsm8k/test.json at any commit or path, and no other
    # public copy with these bytes was found: not pinned.
    Source("gsm8k/test.json", 761421, "9f098df7ff4522078d6ccec27a5c38a454790fdb51131bedfaa0e490070d5394", ("gsm8k",),
           None, "no verifiable public copy of these bytes was found"),

    Source("humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz", 925932,
           "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101", ("humaneval+",),
           _raw("evalplus/humanevalplus_release", "200defce9e3429d28ca215b6dd061c0f7f31c18b", "HumanEvalPlus.jsonl.gz"),
           "README (upstream name HumanEvalPlus.jsonl.gz)"),
    Source("mbppplus/MbppPlus-v0.2.0.jsonl.gz", 336032,
           "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63", ("mbpp+",),
           _raw("evalplus/mbppplus_release", "64fc4195b858a17cdfdb3324f0baf37939144e14", "MbppPlus.jsonl.gz"),
           "README (tag v0.2.0; upstream name MbppPlus.jsonl.gz)"),
    Source("leetcode/20240121-Jul.jsonl", 3019497, "7630417651034cfef749d2b21b47163921e1199e078b39ecbc218b4e7c73fbfc",
           ("leetcode",), _raw(DEEPSEEK_CODER, DSC_README, "Evaluation/LeetCode/data/20240121-Jul.jsonl"), "README"),
    Source("leetcode/20240121-Jul-zh.jsonl", 2999939,
           "1736848a0244bf8a9451f7d9ae6dd509878725c2b44f1b6c00bcb7c260e33665", ("leetcode",),
           _raw(DEEPSEEK_CODER, DSC_README, "Evaluation/LeetCode/data/20240121-Jul-zh.jsonl"), "README"),
    Source("math/test.json", 4101364, "3371949f33dd702d04b43fddd7d53a028de0aaca0e76abb1b875a050297b3aa4", ("math",),
           _raw(DEEPSEEK_CODER, DSC_README, "Evaluation/PAL-Math/datasets/math/test.json"), "README"),
    Source("gsm-hard/test.json", 1151550, "45db606263a4902580aba3974e8b7fb3f66012877889209af206b1c1b2f208f5",
           ("gsm-hard",), _raw(DEEPSEEK_CODER, DSC_README, "Evaluation/PAL-Math/datasets/gsm-hard/test.json"),
           "README"),
    Source("cruxeval/cruxeval.jsonl", 186873, "8368b81047dc5014e4caf5a2f97604eff7644e0ecd7415e3ceeb184bbc2e0c96",
           ("cruxeval",), _raw("facebookresearch/cruxeval", "190faf16d175b5847b0af05d937872b1fb395942",
                               "data/cruxeval.jsonl"), "README"),
)

BY_PATH: dict[str, Source] = {source.path: source for source in SOURCES}
BENCHMARKS: tuple[str, ...] = tuple(dict.fromkeys(name for source in SOURCES for name in source.benchmarks))


def source_of(path: str) -> Source | None:
    """The table's entry for a data file (a path relative to the data folder), or None."""
    return BY_PATH.get(path)


def for_benchmarks(names: list[str] | tuple[str, ...] | None = None) -> list[Source]:
    """The files the named benchmarks read (all of them for None or an empty list), in table order."""
    if not names:
        return list(SOURCES)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise UserError(f"no benchmark data is listed for {', '.join(map(repr, unknown))}; "
                        f"choose from {', '.join(BENCHMARKS)}")
    return [source for source in SOURCES if set(source.benchmarks) & set(names)]
