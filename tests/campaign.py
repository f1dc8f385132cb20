"""The opt-in campaign: a random test's example count in the default run (a quick slice) and
under `pytest -m campaign` (the long run, which .ci/run also runs)."""
import pytest


def sizes(quick: int, campaign: int, tier: str | None = None) -> list:
    """Params of a test's example count: `quick` in the default run, `campaign` under
    `-m campaign`; with `tier`, the params are (tier, count)."""
    head = (tier,) if tier else ()
    return [pytest.param(*head, quick, id="-".join(head + ("quick",))),
            pytest.param(*head, campaign, id="-".join(head + ("campaign",)),
                         marks=pytest.mark.campaign)]
