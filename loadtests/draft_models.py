"""A useless draft model for tests and benchmarks: the target truncated to its first layers
(acceptance near zero: the controller must learn to stop drafting)."""

import json
import shutil
from pathlib import Path


def truncated_draft(model_path: Path, out: Path, layers: int = 6) -> Path:
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (model_path / name).exists():
            shutil.copy(model_path / name, out / name)
    config = json.loads((model_path / "config.json").read_text())
    config["num_hidden_layers"] = layers
    (out / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(model_path / "model.safetensors"))
    kept = {k: v for k, v in tensors.items()
            if not k.startswith("model.layers.") or int(k.split(".")[2]) < layers}
    save_file(kept, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
