"""Models where users keep them: ``hf://org/name[@revision]`` ids on the Hugging Face Hub and local Hub cache
folders (``models--org--name``), resolved to a snapshot folder that ``odecheck analyze`` reads like any
checkpoint folder (an index or one set of shards is one checkpoint).

The Hub id goes through ``huggingface_hub`` (the optional extra ``odecheck[hub]``): the cache first (no
network, as with ``HF_HUB_OFFLINE=1``), then, when the cache lacks the revision and the network is allowed,
a download of the weight files only (safetensors and their index, torch, GGUF and ONNX files, and
``config.json`` for the FP8 block size) - never code, tokenizers or datasets.
"""

from __future__ import annotations

import re
from pathlib import Path

from odecheck.core._errors import InvalidArgument

PREFIX = "hf://"
WEIGHT_FILES = ["*.safetensors", "*.safetensors.index.json", "*.bin", "*.pt", "*.pth", "*.gguf", "*.onnx",
                "config.json"]
_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def is_hub_id(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None]:
    """(repo id, revision or None) of ``hf://org/name[@revision]``; a malformed id is refused by name."""
    body = str(spec)[len(PREFIX):]
    repo, _, rev = body.partition("@")
    if not _ID.match(repo) or (rev == "" and "@" in body):
        raise InvalidArgument(f"{spec}: not a Hub id (expected hf://org/name or hf://org/name@revision)")
    return repo, rev or None


def resolve(spec: str, *, cache_dir: str | None = None) -> Path:
    """The local snapshot folder of a Hub id: from the cache when it holds the revision, else downloaded
    (weight files only) unless the Hub is offline; one line naming the id when neither works."""
    repo, rev = parse(spec)
    try:
        import huggingface_hub as hub
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise InvalidArgument(f"{spec}: reading models by Hub id needs huggingface_hub: "
                              "pip install 'odecheck[hub]'") from None
    import os

    cache = cache_dir or os.environ.get("HF_HUB_CACHE")  # read now, not when huggingface_hub was imported
    kw = {"repo_id": repo, "revision": rev, "cache_dir": cache, "allow_patterns": WEIGHT_FILES}
    try:
        return Path(hub.snapshot_download(local_files_only=True, **kw))
    except LocalEntryNotFoundError:
        pass
    try:
        return Path(hub.snapshot_download(**kw))
    except Exception as e:  # noqa: BLE001 - offline, not found, gated, network: the user gets one line
        raise InvalidArgument(f"{spec}: not in the Hub cache and not downloadable ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160]})") from None


def cache_snapshot(folder: Path) -> Path | None:
    """A local Hub cache folder ``models--org--name`` (with ``refs/`` and ``snapshots/``) as the snapshot of
    its ``main`` ref, or of its only snapshot; None for any other folder."""
    snaps, refs = folder / "snapshots", folder / "refs"
    if not (folder.name.startswith("models--") and snaps.is_dir()):
        return None
    main = refs / "main"
    if main.is_file():
        target = snaps / main.read_text().strip()
        if target.is_dir():
            return target
    found = [p for p in snaps.iterdir() if p.is_dir()]
    if len(found) == 1:
        return found[0]
    raise InvalidArgument(f"{folder}: a Hub cache folder with {len(found)} snapshots and no refs/main: name one "
                          f"({', '.join(p.name[:12] for p in found[:3])})")


__all__ = ["PREFIX", "WEIGHT_FILES", "cache_snapshot", "is_hub_id", "parse", "resolve"]
