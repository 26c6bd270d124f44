"""User-side audience index: reach preview and audience export over many users.

``AudienceIndex.open(path, taxonomy)`` builds (or maps back) the index of a profile
Parquet file or directory; ``.lookup`` serves decide, ``.reach`` and ``.export`` the
preview and export APIs. :mod:`.privacy` turns an exact reach answer into the
advertiser-facing one; :mod:`.jobs` runs exports in the background.
"""

from __future__ import annotations

from .index import AudienceIndex as AudienceIndex
from .load import ProfileError as ProfileError
from .load import read_profiles as read_profiles

__all__ = ["AudienceIndex", "ProfileError", "read_profiles"]
