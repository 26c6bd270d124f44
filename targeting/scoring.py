"""Click models behind one small interface, and eCPM ranking.

Until a model is trained (``targeting train``), pCTR is the category prior from
``rules/taxonomy/categories.csv``: industry-typical display CTRs per category.

What a model must provide is :class:`ClickModel` (a version and ``predict``).
What it may provide, each an ability the rankers use when it is there and do
without when it is not:

- :class:`BoundedModel`: ``max_pctr``, an upper bound of each campaign's pCTR over
  all requests. Without it the rankers bound pCTR by 1 (they visit more).
- :class:`SplitModel`: the logit of P(click) splits into a campaign part and a
  request part per category (``targeting.model.LogisticModel``); the rankers then
  bound each request's eCPM per block of campaigns (``targeting.bounds``) and
  score a whole block of requests at once.

Abilities are declared by these protocols and checked once, when a ranking
layout is built (``targeting.layout``), never probed attribute by attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .compiler import CampaignIndex
from .request import Request

if TYPE_CHECKING:
    from .batchrequests import Requests


@runtime_checkable
class ClickModel(Protocol):
    """What every click model provides."""

    version: str

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """float64[len(campaigns)]: P(click) of ``request`` for each campaign position."""
        ...


@runtime_checkable
class BoundedModel(ClickModel, Protocol):
    """A model that knows how high its pCTR can go."""

    def max_pctr(self, index: CampaignIndex) -> np.ndarray:
        """float64[index.n_campaigns]: no request gets a higher pCTR for the campaign."""
        ...


@runtime_checkable
class SplitModel(BoundedModel, Protocol):
    """A model whose logit is ``campaign_logits[c] + a·u[k]``: a campaign part and, for the
    campaign's category ``k``, a request part ``u`` (float64[n_categories])."""

    a: float  # the calibration slope (may be negative: then no block bound holds)

    @property
    def n_categories(self) -> int: ...

    def campaign_logits(self, index: CampaignIndex) -> np.ndarray:
        """float64[index.n_campaigns]: each campaign's part of the logit."""
        ...

    def user_logit(self, request: Request) -> np.ndarray:
        """float64[n_categories]: the request part ``u`` of one request."""
        ...

    def user_logits(self, reqs: Requests) -> np.ndarray:
        """float64[B, n_categories]: :meth:`user_logit` of every request of a block."""
        ...

    def predict_user(self, u: np.ndarray, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """``predict`` from the request's :meth:`user_logit` ``u``."""
        ...

    def predict_user_pairs(self, users: np.ndarray, req: np.ndarray, camp: np.ndarray,
                           index: CampaignIndex) -> np.ndarray:
        """float64[P]: P(click) of pairs (request ``req[k]`` of a block whose :meth:`user_logits`
        are ``users``, campaign ``camp[k]``)."""
        ...


class PriorModel:
    """pCTR = the campaign category's prior click-through rate (a :class:`BoundedModel`:
    the prior is its own bound)."""

    version = "prior"

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        return index.prior_ctr[campaigns]

    def max_pctr(self, index: CampaignIndex) -> np.ndarray:
        return index.prior_ctr


def ecpm(index: CampaignIndex, campaigns: np.ndarray, pctr: np.ndarray) -> np.ndarray:
    """float64[len(campaigns)]: ``cpm`` bids as they are, ``cpc × pCTR × 1000`` otherwise."""
    bid = index.bid[campaigns]
    return np.where(index.is_cpc[campaigns], bid * pctr * 1000.0, bid)


__all__ = ["BoundedModel", "ClickModel", "PriorModel", "SplitModel", "ecpm"]
