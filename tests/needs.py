"""Markers for tests that need a program outside Python."""
import shutil

import pytest

# the circuit pictures are rendered by Graphviz's dot (`apt-get install graphviz`); .ci/run
# installs it, so CI runs these tests
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot program is not installed "
                                      "(apt-get install graphviz)")

# the docs site's browser test opens the pages in Debian's headless chromium (`apt-get install
# chromium`); .ci/run installs it, so CI runs that test
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="Chromium is not installed (apt-get install chromium)")
