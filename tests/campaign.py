"""The opt-in campaign, `pytest -m campaign` (the long run, which .ci/run also runs): random
models by the thousand, and the checks the default run makes for some functions, dtypes,
orders, tiers or modules, made for all of them. The default run keeps a quick slice of each."""
import pytest

CAMPAIGN = pytest.mark.campaign


def slice_of(values, quick) -> list:
    """Params of `values`: those in `quick` in the default run, all under `-m campaign`."""
    assert set(quick) <= set(values), set(quick) - set(values)
    return [v if v in quick else pytest.param(v, marks=CAMPAIGN) for v in values]


def sizes(quick: int, campaign: int, tier: str | None = None) -> list:
    """Params of a test's example count: `quick` in the default run, `campaign` under
    `-m campaign`; with `tier`, the params are (tier, count)."""
    head = (tier,) if tier else ()
    return [pytest.param(*head, quick, id="-".join(head + ("quick",))),
            pytest.param(*head, campaign, id="-".join(head + ("campaign",)),
                         marks=pytest.mark.campaign)]
