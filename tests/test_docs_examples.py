"""docs/campaigns.md cannot drift: every YAML example in it goes through the real loader.

Fenced blocks are read from the page:

- ```` ```yaml ```` holding a list is a campaign file, loaded as it stands;
- ```` ```yaml ```` holding a mapping of targeting dimensions is a spec, loaded as the
  ``targeting:`` of a plain campaign;
- ```` ```yaml invalid ```` is a campaign file that must be refused, and the
  ```` ```text ```` block after it is what ``targeting validate`` prints for it.

Coverage checks make a new campaign field or targeting dimension fail here until the page
documents it with an example.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from targeting.cli import main
from targeting.compiler import compile_campaigns
from targeting.rules import CAMPAIGN_FIELDS, load_rules
from targeting.spec import DIMENSIONS
from targeting.taxonomy import Taxonomy

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "campaigns.md"
TAXONOMY = ROOT / "rules" / "taxonomy"
FILE = "example.yaml"  # the name validate's expected output shows: rules/campaigns/example.yaml

# The campaign a spec example is the targeting of; "advertiser: acme" owns its retargeting.
HOST = """\
- id: docs-example
  advertiser: acme
  bid: {cpm: 10}
  category: retail
  targeting:
"""

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence in the page
    info: str  # the fence's info string: "yaml", "yaml invalid", "text", ...
    text: str  # dedented content


def blocks(markdown: str) -> list[Block]:
    """Fenced code blocks of ``markdown`` in page order, including those indented in lists."""
    out: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, start = m["indent"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i].removeprefix(indent))
            i += 1
        out.append(Block(start + 1, m["info"].strip(), textwrap.dedent("\n".join(body)) + "\n"))
        i += 1
    return out


PAGE_BLOCKS = blocks(PAGE.read_text(encoding="utf-8"))
VALID = [b for b in PAGE_BLOCKS if b.info == "yaml"]
INVALID = [
    (
        b,
        PAGE_BLOCKS[k + 1]
        if k + 1 < len(PAGE_BLOCKS) and PAGE_BLOCKS[k + 1].info == "text"
        else None,
    )
    for k, b in enumerate(PAGE_BLOCKS)
    if b.info == "yaml invalid"
]


def campaign_file(block: Block) -> str:
    """The block as the text of a campaign file."""
    doc = yaml.safe_load(block.text)
    if isinstance(doc, list):
        return block.text
    if isinstance(doc, dict) and set(doc) <= set(DIMENSIONS):
        return HOST + textwrap.indent(block.text, "    ")
    raise AssertionError(
        f"docs/campaigns.md line {block.line}: a yaml example is a list of campaigns or a "
        f"mapping of targeting dimensions, not {doc!r}"
    )


def rules_dir(root: Path, text: str) -> Path:
    rules = root / "rules"
    (rules / "campaigns").mkdir(parents=True)
    (rules / "taxonomy").symlink_to(TAXONOMY, target_is_directory=True)
    (rules / "campaigns" / FILE).write_text(text, encoding="utf-8")
    return rules


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load(TAXONOMY)


@pytest.mark.parametrize("block", VALID, ids=[f"line{b.line}" for b in VALID])
def test_example_loads(block: Block, tmp_path: Path, tx: Taxonomy) -> None:
    rs = load_rules(rules_dir(tmp_path, campaign_file(block)), tx)
    assert rs.campaigns
    compile_campaigns(rs.campaigns, tx, rs.version)  # and compiles into the serving index


@pytest.mark.parametrize("pair", INVALID, ids=[f"line{b.line}" for b, _ in INVALID])
def test_invalid_example_is_refused_as_documented(
    pair: tuple[Block, Block | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block, expected = pair
    assert expected is not None, (
        f"line {block.line}: an invalid example is followed by a text block of its errors"
    )
    rules = rules_dir(tmp_path, block.text)
    capsys.readouterr()
    assert main(["validate", "--rules", str(rules)]) == 1
    printed = capsys.readouterr().err.splitlines()
    want = expected.text.strip().splitlines()
    # Each documented line is part of one printed line, in order (an added hint after it is fine).
    assert len(printed) == len(want), "\n".join(printed)
    for documented, actual in zip(want, printed):
        assert documented in actual


def test_page_has_examples() -> None:
    assert len(VALID) >= 20 and len(INVALID) >= 1


def _spec_keys(spec: Any, out: set[str]) -> None:
    if isinstance(spec, dict):
        out.update(spec)
        if isinstance(spec.get("time"), dict):
            out.update(f"time.{k}" for k in spec["time"])
        for sub in spec.get("any_of") or []:
            _spec_keys(sub, out)


def test_every_field_and_option_has_an_example() -> None:
    fields: set[str] = set()
    options: set[str] = set()
    for block in VALID:
        doc = yaml.safe_load(block.text)
        for c in doc if isinstance(doc, list) else []:
            fields.update(c)
            _spec_keys(c.get("targeting"), options)
        if isinstance(doc, dict):
            _spec_keys(doc, options)
    assert set(CAMPAIGN_FIELDS) <= fields, (
        f"campaign fields without an example: {set(CAMPAIGN_FIELDS) - fields}"
    )
    assert set(DIMENSIONS) <= options, (
        f"targeting options without an example: {set(DIMENSIONS) - options}"
    )
    forms = {"time.days", "time.hours", "time.grid", "time.series"}
    assert forms <= options, f"time forms without an example: {forms - options}"
