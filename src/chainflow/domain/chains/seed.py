"""The chain seed file (`CHAINFLOW_CHAINS_FILE`, default the packaged chains.yaml): read
bounded, parsed safely, validated with the API's own rules. Any fault is one ConfigError
naming the file and where in it, never echoing its content (RPC URLs may embed a key)."""

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from chainflow.core.errors import ConfigError
from chainflow.domain.chains.schemas import ChainSeed
from chainflow.infra.files import read_text_file

# The packaged file is ~2 KB; a registry of every EVM chain would still be far below this.
CHAINS_FILE_MAX_BYTES = 1024 * 1024
# The seed nests 3 deep. PyYAML's scanner costs O(depth) per token in flow collections, so
# 500,000 `[` (in bounds) kept it busy for minutes: deeper files are refused before parsing.
CHAINS_FILE_MAX_DEPTH = 32


def load_seed(path: Path | None = None) -> list[ChainSeed]:
    """Read and validate the chain seed file. Raises: ConfigError, UnreadableFile."""
    if path is None:
        text = resources.files("chainflow").joinpath("chains.yaml").read_text()
        source = "the packaged chains.yaml"
    else:
        text = read_text_file(path, what="chains", max_bytes=CHAINS_FILE_MAX_BYTES)
        source = f"chains file {path}"
    entries = _entries(_parse(text, source), source)
    return [_validated(entry, index, source) for index, entry in enumerate(entries)]


def _parse(text: str, source: str) -> Any:
    if _flow_depth(text) > CHAINS_FILE_MAX_DEPTH:
        raise ConfigError(f"{source} nests deeper than {CHAINS_FILE_MAX_DEPTH} levels")
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{source} is not valid YAML{where}") from None
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"{source} is not valid YAML") from None


def _flow_depth(text: str) -> int:
    """The deepest nesting of `[`/`{`, counting brackets inside quotes too (an overestimate,
    which is safe: a seed file has no reason to nest brackets inside its strings)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    return deepest


def _entries(document: Any, source: str) -> list[Any]:
    if document is None:
        return []
    chains = document.get("chains", []) if isinstance(document, dict) else None
    if not isinstance(chains, list):
        raise ConfigError(f"{source} must be a mapping with a `chains:` list")
    return chains


def _validated(entry: Any, index: int, source: str) -> ChainSeed:
    try:
        return ChainSeed.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "extra_forbidden":  # its loc is the unknown key, i.e. content
            known = ", ".join(ChainSeed.model_fields)
            raise ConfigError(f"{source}: chains[{index}] has an unknown field ({known})") from None
        field = ".".join(str(part) for part in first["loc"]) or "entry"
        # loc and msg only: the error's own text repeats the input.
        raise ConfigError(f"{source}: chains[{index}].{field}: {first['msg']}") from None
