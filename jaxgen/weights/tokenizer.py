"""Tokenize prompts, and write CLIP-format tokenizer files that CLIPTokenizer loads.

`tokenize` is the one way prompts become token ids, for sampling, evaluation and training.
The files (vocab.json + merges.txt) are for locally built models: tiny test models and the
shapes model, whose words become single tokens through one BPE merge chain per word.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def tokenize(tokenizer: Any, prompts: list[str]) -> np.ndarray:
    """int32 [B, model_max_length] token ids, padded and truncated as diffusers' pipelines do."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="np").input_ids
    return ids.astype(np.int32)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def write_clip_tokenizer(out_dir: str | Path, words: Iterable[str] = (),
                         max_length: int = 77) -> dict[str, int]:
    """Write tokenizer files; every word in `words` (lower case) becomes one token.

    Returns the vocabulary. Words are merged left to right, and each word's merges are
    ranked as a block, so BPE always rebuilds the whole word.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    merges: list[str] = []
    for word in sorted({w.lower() for w in words if len(w) > 1}):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merge = f"{left} {right}"
            if merge not in merges:
                merges.append(merge)
            left += right
            vocab.setdefault(left, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
              "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
              "do_lower_case": True}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2))
    return vocab
