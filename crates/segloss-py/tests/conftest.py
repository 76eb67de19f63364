"""Shared test helpers: the repository's committed fixtures (tests/fixtures/maps at the repo root)."""
import json
import os

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MAPS = os.path.join(ROOT, "tests", "fixtures", "maps")


def maps_manifest():
    with open(os.path.join(MAPS, "manifest.json")) as fh:
        return json.load(fh)["cases"]


def load_npz(name):
    with np.load(os.path.join(MAPS, name)) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def rng():
    return np.random.default_rng(20261207)
