"""Every bad input of ``tests/bad_inputs.py`` raises the dice error with a useful message and changes nothing.

The same cases generate the documentation's table (``docs/make_bad_inputs.py`` -> ``docs/bad_inputs.md``).
"""

import re

import pytest

from bad_inputs import CASES, Context, run_case
from helpers import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, torch_threads):
    return Context(tmp_path_factory.mktemp("bad_inputs"))


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_raises_the_dice_error_and_changes_nothing(case, ctx):
    reason = case.skip() if case.skip is not None else None
    if reason:
        pytest.skip(reason)
    if case.gap:
        pytest.xfail(f"not handled yet: {case.gap}")
    adata = case.prepare(ctx) if case.prepare is not None else None
    before = snapshot(adata) if adata is not None else None
    with pytest.raises(case.error, match=re.escape(case.match)) as info:
        case.run(ctx, adata)
    assert "\n" not in str(info.value).strip(), "dice's messages are one paragraph"
    if adata is not None:
        assert_unchanged(adata, before)


def test_known_gaps_still_fail_as_recorded(ctx):
    """A case marked as a gap must still be one (remove the mark once dice handles it)."""
    for case in (c for c in CASES if c.gap):
        _, error = run_case(case, ctx)
        assert error is not None and not isinstance(error, case.error), case.id
