"""Click models behind one small interface, and eCPM ranking.

Until a model is trained (``targeting train``), pCTR is the category prior from
``rules/taxonomy/categories.csv``: industry-typical display CTRs per category.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .compiler import CampaignIndex
from .request import Request


@runtime_checkable
class ClickModel(Protocol):
    version: str

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """float64[len(campaigns)]: P(click) of ``request`` for each campaign position."""
        ...


class PriorModel:
    """pCTR = the campaign category's prior click-through rate."""

    version = "prior"

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        return index.prior_ctr[campaigns]


def ecpm(index: CampaignIndex, campaigns: np.ndarray, pctr: np.ndarray) -> np.ndarray:
    """float64[len(campaigns)]: ``cpm`` bids as they are, ``cpc × pCTR × 1000`` otherwise."""
    bid = index.bid[campaigns]
    return np.where(index.is_cpc[campaigns], bid * pctr * 1000.0, bid)

