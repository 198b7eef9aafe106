"""Checkpoints as people publish them: tensors listed without loading them, grouped into weight paths
along depth, and their statistics computed one column chunk at a time.

Formats: ``.safetensors`` (read here from its header and memory-mapped: no tensor is loaded until its
columns are needed), sharded safetensors (``model.safetensors.index.json``), ``.pt`` / ``.pth`` /
``.bin`` state_dicts (``torch.load(weights_only=True, mmap=True)``: tensors only, never arbitrary
objects; wrapped in ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}`` or
``{"net": ...}``; ``module.`` prefixes dropped) and a folder holding any of these.

Names are grouped into paths by their first dot-separated integer, the layer index:
``model.layers.12.self_attn.q_proj.weight`` -> ``model.layers.*.self_attn.q_proj.weight``. Within a
group, consecutive layers of one shape form a path (``layer2.*.conv1.weight[1:4]`` when the shape
changes along the stage); what cannot form a path (a single layer of its shape) is listed with the
reason, never dropped silently.

The package holds one reader per format (``safetensors_reader``, ``torch_reader``, ``gguf_reader``,
``onnx_reader``), FP8 block scales (``fp8``), the listing of a file or folder (``listing``) and the paths and
their statistics (``paths``); this module names what the rest of odecheck uses.
"""

from odecheck.analysis.checkpoints.fp8 import SCALE_SUFFIX, fp8_block_size
from odecheck.analysis.checkpoints.listing import checkpoint_files, is_shard_set, list_tensors, regular_file, sniff
from odecheck.analysis.checkpoints.paths import (
    BUFFERS,
    NORM_WORDS,
    REGULARITY_ORDER,
    CheckpointPath,
    NonFinite,
    analyze_checkpoint,
    family_name,
    feeds_normalization,
    group_paths,
    least_regular_first,
    path_statistics,
)
from odecheck.analysis.checkpoints.refs import CHUNK_ENTRIES, FP8_BLOCK, FP8_DTYPES, WRAPPERS, GGUFSource, TensorRef

__all__ = ["BUFFERS", "CHUNK_ENTRIES", "FP8_BLOCK", "FP8_DTYPES", "NORM_WORDS", "REGULARITY_ORDER", "SCALE_SUFFIX",
           "WRAPPERS", "CheckpointPath", "GGUFSource", "NonFinite", "TensorRef", "analyze_checkpoint",
           "checkpoint_files", "family_name", "feeds_normalization", "fp8_block_size", "group_paths", "is_shard_set",
           "least_regular_first", "list_tensors", "path_statistics", "regular_file", "sniff"]
