"""User-side audience index: reach preview and audience export."""
