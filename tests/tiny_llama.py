"""A tiny Llama-architecture model with random weights, built on the spot for tests that need a real LLM server.

Nothing can be downloaded from a model hub here, so the tests make their own model: a byte-level BPE tokenizer
trained with `tokenizers` (so any text, JSON included, is encodable) and a randomly initialised
`LlamaForCausalLM` saved as safetensors. Its output is noise, but a server doing guided decoding still produces
schema-valid JSON from it, which is what the tests of the LLM client need.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

BOS = "<s>"
EOS = "</s>"
PAD = "<pad>"
# An upper bound: the small corpus below yields about 500 tokens (256 bytes, 3 special tokens, merges).
VOCAB_SIZE = 1024
SEED = 1234

# A ChatML-style template; vLLM's /v1/chat/completions renders it with the tokenizer's special tokens.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Training text: a little JSON and prose, so that the merges cover the shapes the tests generate. Byte-level BPE
# encodes anything regardless; this only keeps token counts down.
CORPUS = [
    '{"summary": "disk full on db-1", "severity": "critical", "tags": ["disk", "db"]}',
    '{"title": "High latency", "confidence": 0.75, "causes": [], "ok": true, "next": null}',
    "The checkout service returns HTTP 500 errors after the deploy; the database connection pool is exhausted.",
    "<|system|>\nYou are an incident responder.\n<|user|>\nSummarise the alert.\n<|assistant|>\n",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ {}[]:,\"'\\/-_.!?()",
]


def _train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer=trainer)
    return tokenizer


def build_tiny_llama(directory: Path) -> Path:
    """Write the tokenizer, config and random weights of a tiny Llama into `directory`; return it.

    The same call always writes the same model (fixed seed, deterministic tokenizer training).
    """
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    tokenizer.save(str(directory / "tokenizer.json"))
    bos_id, eos_id, pad_id = (tokenizer.token_to_id(token) for token in (BOS, EOS, PAD))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (directory / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}, indent=2)
    )

    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 32: the smallest that vLLM's CPU attention takes
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    return directory
