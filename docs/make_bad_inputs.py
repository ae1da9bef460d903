"""Write ``docs/bad_inputs.md``: every bad input of the test suite and the message dice answers it with.

The cases are ``tests/bad_inputs.py``'s :data:`CASES` (the ones ``tests/test_bad_inputs.py`` asserts); each is
run here and the message it raises is captured, so the table shows what dice actually says.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python docs/make_bad_inputs.py`` (a few seconds; trains a tiny model).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

OUTPUT = HERE / "bad_inputs.md"

HEADER = """# Bad inputs

What `dice` says when it is given an input it cannot use. Every row is a case of the test suite
(`tests/bad_inputs.py`, asserted by `tests/test_bad_inputs.py`): the call raises the error shown, before any
work is done, and leaves the AnnData it was given unchanged. The messages were captured by running the cases
(`python docs/make_bad_inputs.py` regenerates this page). `DiceModelError` is a `DiceInputError`, which is a
`ValueError`; the command line (`dice train`, `dice denoise`, `dice transfer`) prints the same messages as one line,
`dice: error: ...`, and exits with code 2.

In the calls, `reference` and `query` are small log-normalised AnnData objects (60 genes), `model` a prior
trained on `reference` and `path` a folder written by `model.save(path)` and then damaged as described.
"""


def cell(text: str) -> str:
    """``text`` as one markdown table cell (pipes escaped, no line breaks, no raw HTML)."""
    text = " ".join(str(text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    """``text`` as inline code inside a table cell (entities are not decoded there: only pipes are escaped)."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def rows(ctx) -> list[str]:
    """One table row per case: input, call, error type and message."""
    from bad_inputs import CASES, run_case

    lines = ["| input | call | dice says |", "|---|---|---|"]
    for case in CASES:
        reason = case.skip() if case.skip is not None else None
        if reason:
            said = f"*(not run here: {reason})*"
        else:
            _, error = run_case(case, ctx)
            if error is None:
                said = "**accepted: no error** (not handled yet)"
            else:
                message = ctx.relative(str(error))
                said = f"`{type(error).__name__}`: {cell(message)}"
                if case.gap or not isinstance(error, case.error):
                    said = f"**not handled yet** ({cell(case.gap or 'not a dice error')}): {said}"
        lines.append(f"| {cell(case.input)} | {code(case.call)} | {said} |")
    return lines


def render() -> str:
    """The whole page."""
    from bad_inputs import Context

    with tempfile.TemporaryDirectory(prefix="dice_bad_inputs_") as directory:
        ctx = Context(directory)
        table = rows(ctx)
    return HEADER + "\n" + "\n".join(table) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUTPUT, help="markdown file to write")
    args = parser.parse_args(argv)
    text = render()
    args.out.write_text(text)
    print(f"wrote {args.out} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
