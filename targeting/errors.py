"""Errors users see: every one names the field (``path``) and the reason."""

from __future__ import annotations

from dataclasses import dataclass


class TargetingError(Exception):
    """Bad input from a caller: an HTTP 4xx, a CLI exit code 2.

    ``code`` is a stable machine-readable word, ``path`` the dotted/indexed
    location of the offending field (``targeting.geo.include[1]``) or ``None``.
    """

    status = 400

    def __init__(self, message: str, *, path: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.code = code

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.path is not None:
            body["path"] = self.path
        return body


class NotFound(TargetingError):
    status = 404

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, path=path, code="not_found")


class Forbidden(TargetingError):
    status = 403

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, path=path, code="forbidden")


class Unavailable(TargetingError):
    """A capability that is not loaded (no profiles, no model): 409 from HTTP."""

    status = 409

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, path=path, code="unavailable")


@dataclass(frozen=True)
class Problem:
    """One validation failure in a rules file."""

    file: str | None
    campaign: str | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = ":".join(p for p in (self.file, self.campaign) if p)
        return f"{where}: {self.path}: {self.reason}" if where else f"{self.path}: {self.reason}"

    def to_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "campaign": self.campaign, "path": self.path, "reason": self.reason}


class RulesError(TargetingError):
    """A rule set that failed validation; ``problems`` lists every failure."""

    status = 422

    def __init__(self, problems: list[Problem]) -> None:
        head = str(problems[0]) if problems else "invalid rules"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(head + more, path=problems[0].path if problems else None, code="invalid_rules")
        self.problems = problems

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body["problems"] = [p.to_dict() for p in self.problems]
        return body
