"""``GET /v1/taxonomy``: the vocabulary the reach page (and any client) builds specs from.

The answer is a pure function of the loaded :class:`~targeting.taxonomy.Taxonomy`,
computed once per taxonomy object and served with a validator so browsers revalidate
cheaply. ``create_app`` includes ``router``; the handler finds the engine at
``app.state.engine`` (or ``app.state.targeting.engine``) and checks the key there: any
valid key may read the vocabulary; with no ``--auth`` it is open like every route.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response

from targeting.spec import EVENTS
from targeting.taxonomy import GENDERS, MAX_AGE, WEEKDAYS, Taxonomy

router = APIRouter()

_cache: dict[int, tuple[Taxonomy, bytes, str]] = {}


def taxonomy_json(tx: Taxonomy) -> dict[str, Any]:
    """The taxonomy as plain JSON: provinces (adcode order) each with its cities,
    tags and scenes in file order, and the fixed vocabularies of the language."""
    provinces = []
    for p in tx.provinces:
        pl = tx.places[p]
        provinces.append(
            {
                "adcode": pl.adcode,
                "name": pl.name,
                "short_name": pl.short_name,
                "pinyin": pl.pinyin,
                "iso": pl.iso,
                "longitude": pl.longitude,
                "latitude": pl.latitude,
                "population": tx.population.get(p),
                "cities": [
                    {
                        "adcode": c,
                        "name": tx.places[c].name,
                        "short_name": tx.places[c].short_name,
                        "pinyin": tx.places[c].pinyin,
                    }
                    for c in tx.cities_of(p)
                ],
            }
        )
    return {
        "provinces": provinces,
        "tags": [
            {"id": t, "label": label, "group": tx.tag_groups.get(t, "")}
            for t, label in tx.tags.items()
        ],
        "scenes": [{"id": s, "label": label} for s, label in tx.scenes.items()],
        "genders": list(GENDERS),
        "weekdays": list(WEEKDAYS),
        "events": list(EVENTS),
        "max_age": MAX_AGE,
    }


def _encoded(tx: Taxonomy) -> tuple[bytes, str]:
    hit = _cache.get(id(tx))
    if hit is None or hit[0] is not tx:
        body = json.dumps(taxonomy_json(tx), ensure_ascii=False, separators=(",", ":")).encode()
        hit = (tx, body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
        _cache.clear()
        _cache[id(tx)] = hit
    return hit[1], hit[2]


@router.get("/v1/taxonomy", tags=["taxonomy"])
def get_taxonomy(request: Request) -> Response:
    """Provinces with their cities (Chinese names, pinyin), tags with labels, scenes."""
    app_state = request.app.state
    service = getattr(app_state, "targeting", None)
    if service is not None:
        service.principal(request)  # any valid key may read the vocabulary
    engine = getattr(app_state, "engine", None) or getattr(service, "engine", None)
    if engine is None:
        raise RuntimeError("the taxonomy route needs app.state.engine or app.state.targeting")
    body, etag = _encoded(engine.taxonomy)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
