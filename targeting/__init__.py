"""targeting: an ad-targeting decision engine.

The right time, the right place, the right audience.
"""

from __future__ import annotations

from .engine import Engine as Engine
from .errors import Forbidden as Forbidden
from .errors import NotFound as NotFound
from .errors import Problem as Problem
from .errors import RulesError as RulesError
from .errors import TargetingError as TargetingError
from .errors import Unavailable as Unavailable
from .scoring import ClickModel as ClickModel
from .spec import Spec as Spec
from .spec import SpecError as SpecError
from .spec import parse_spec as parse_spec
from .taxonomy import Taxonomy as Taxonomy

__version__ = "0.1.0"

__all__ = [
    "ClickModel",
    "Engine",
    "Forbidden",
    "NotFound",
    "Problem",
    "RulesError",
    "Spec",
    "SpecError",
    "TargetingError",
    "Taxonomy",
    "Unavailable",
    "__version__",
    "parse_spec",
]
