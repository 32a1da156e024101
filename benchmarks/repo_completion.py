"""Repository context against the file alone, for several models: `dscoder eval repo-completion`'s runs side by side.

Each RUN is a results folder of `dscoder eval repo-completion` (finished or stopped part way: its
samples.jsonl is read as it stands, and only the cases answered in both settings count, so the
two settings always see the same cases). Prints one table (EM, ES, prompt tokens, seconds per
case, per setting and the gain), writes each folder's report.md and chart.png for the cases it
holds, and with --append adds the table to benchmarks/RESULTS.md.

    python benchmarks/repo_completion.py /work/runs/rc/smol /work/runs/rc/tiny3 --label embedded --label tiny --append
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from benchlib import cpu_name

from dscoder.eval.repo_completion import CONFIG_FILE, COLUMNS, read_rows, summarize, table_rows, title, write

RESULTS = Path(__file__).with_name("RESULTS.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="results folders of dscoder eval repo-completion")
    parser.add_argument("--label", action="append", default=[], help="a name per run for the table (in order)")
    parser.add_argument("--append", action="store_true", help="add the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    labels = args.label + [str(run) for run in args.runs[len(args.label):]]
    lines = ["| model | " + " | ".join(COLUMNS) + " | definition in context |",
             "|---|" + "---|" * (len(COLUMNS) + 1)]
    notes = []
    for label, run in zip(labels, args.runs):
        config = json.loads((run / CONFIG_FILE).read_text())
        numbers = summarize(read_rows(run), config, {})
        write(run, numbers)
        for k, row in enumerate(table_rows(numbers)):
            defined = f"{numbers['context']['defined_in_context']:.0f}%" if k == 1 else ""
            lines.append(f"| {label if k == 0 else ''} | " + " | ".join(row) + f" | {defined} |")
        asked = config.get("limit")
        notes.append(f"- {label}: {title(config)}; {numbers['cases']} cases answered in both settings"
                     + (f" of the {asked} asked (the run was stopped there)" if asked and numbers["cases"] < asked else "")
                     + f"; mean context {numbers['context']['tokens']:.0f} tokens; report: {run}/report.md")
    table = "\n".join(lines + [""] + notes)
    print(table)
    if args.append:
        stamp = datetime.date.today().isoformat()
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(f"\n### repo_completion.py — {stamp} — {cpu_name()}, 2 threads\n\n{table}\n")


if __name__ == "__main__":
    main()
