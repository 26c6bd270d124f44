"""Request-body schemas for the OpenAPI page (``/docs``).

Documentation only: bodies are validated by the engine, which names the exact
field path in its errors; pydantic would validate twice and word errors differently.
"""

from __future__ import annotations

from typing import Any

_GEO = {"type": "object", "properties": {
    "city": {"type": ["integer", "string"], "description": "adcode, Chinese name or pinyin"},
    "province": {"type": ["integer", "string"]}}, "additionalProperties": False}

DECIDE: dict[str, Any] = {
    "type": "object",
    "required": ["user_id"],
    "additionalProperties": False,
    "properties": {
        "request_id": {"type": "string"},
        "user_id": {"type": "string"},
        "ts": {"type": "string", "format": "date-time", "description": "ISO 8601 with a zone; default now"},
        "geo": _GEO,
        "gender": {"enum": ["male", "female"]},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"type": "string"}},
        "scene": {"enum": ["home", "office", "internet_cafe", "campus", "on_the_go"]},
        "slot": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
        "floor_cpm": {"type": "number", "minimum": 0},
        "explain": {"type": "boolean", "default": False},
    },
    "example": {"request_id": "r1", "user_id": "u1", "ts": "2026-11-24T09:30:00+08:00",
                "geo": {"city": 440300}, "gender": "female", "age": 29, "tags": ["white_collar_women"],
                "scene": "office", "explain": True},
}
BATCH: dict[str, Any] = {
    "type": "object", "required": ["requests"], "additionalProperties": False,
    "properties": {"requests": {"type": "array", "maxItems": 1000, "items": DECIDE}},
}
SPEC: dict[str, Any] = {
    "type": "object",
    "description": "The targeting language (contract §2): geo, time, gender, age, tags, scene, "
                   "retargeting, any_of. {} matches everyone.",
    "example": {"geo": {"include": ["广东", 310000], "exclude": ["深圳"]}, "gender": "female",
                "age": [[25, 34]], "tags": {"any": ["white_collar_women", "trendsetter"]}},
}
REACH: dict[str, Any] = {
    "type": "object", "required": ["targeting"], "additionalProperties": False,
    "properties": {"targeting": SPEC, "advertiser": {"type": "string"},
                   "breakdown": {"type": "array", "items": {"type": "string"}}},
}
EXPORT: dict[str, Any] = {
    "type": "object", "required": ["targeting"], "additionalProperties": False,
    "properties": {"targeting": SPEC, "advertiser": {"type": "string"},
                   "format": {"enum": ["parquet", "csv"], "default": "parquet"},
                   "hash_salt": {"type": "string", "description": "export salted SHA-256 of user ids"}},
}
EVENTS: dict[str, Any] = {
    "type": "object", "required": ["events"], "additionalProperties": False,
    "properties": {"events": {"type": "array", "maxItems": 10000, "items": {
        "type": "object", "required": ["user_id", "advertiser", "event"],
        "properties": {"user_id": {"type": "string"}, "advertiser": {"type": "string"},
                       "event": {"enum": ["visit", "click", "add_to_cart", "purchase"]},
                       "ts": {"type": "string", "format": "date-time"}}}}},
}
IMPRESSIONS: dict[str, Any] = {
    "type": "object", "required": ["impressions"], "additionalProperties": False,
    "properties": {"impressions": {"type": "array", "maxItems": 10000, "items": {
        "type": "object", "required": ["user_id", "campaign_id"],
        "properties": {"user_id": {"type": "string"}, "campaign_id": {"type": "string"},
                       "ts": {"type": "string", "format": "date-time"},
                       "price": {"type": "number", "minimum": 0, "description": "clearing CPM"}}}}},
}
EMPTY: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}


def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}
