"""Build the tiny Llama-style model the examples and the trainer's tests start from.

The trainer loads every model with ``AutoModelForCausalLM.from_pretrained``; this script makes a
real Hugging Face model folder (config.json, model.safetensors, tokenizer.json with a chat
template) small enough to ship in the repository (about 300 KB), so the README's main job runs
with no network and exercises exactly the loading code a 7B model goes through.

The weights are random (seeded): this is a stand-in for a pretrained base, not a useful model.
The tokenizer is a byte-level BPE trained on the example data, so it can encode any text.

Usage::

    python examples/models/build_tiny_llama.py [OUTPUT_DIR]   # default: examples/models/tiny-llama
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "tiny-llama"
TRAINING_TEXT = HERE.parent / "data" / "tiny-instructions.jsonl"

VOCAB_SIZE = 384
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# Role markers, then the content; every turn ends with <|end|>. The {% generation %} markers let
# tools that use them find the assistant turns; the trainer itself finds them by rendering prefixes.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|end|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
# Extra text so the tokenizer learns chat-like and general English pieces, not only the example.
EXTRA_TEXT = [
    "You are a helpful assistant. Answer briefly and politely.",
    "Hello! How can I help you today? Thank you, that is all.",
    "The quick brown fox jumps over the lazy dog.",
]


def training_corpus() -> list[str]:
    """The texts the tokenizer is trained on: the example data plus a few general sentences."""
    texts = list(EXTRA_TEXT)
    for line in TRAINING_TEXT.read_text().splitlines():
        record = json.loads(line)
        texts.append(record["prompt"] + record["completion"])
    return texts


def build_tokenizer(output: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )
    wrapped.save_pretrained(output)


def build_model(output: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(output)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        # Larger than the usual 0.02: with a frozen random embedding (tied to the output layer),
        # small weights cap the logits near zero and LoRA could barely lower the loss.
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT, help="Model folder to write.")
    args = parser.parse_args()
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    build_tokenizer(output)
    build_model(output)
    size = sum(f.stat().st_size for f in output.iterdir())
    print(f"wrote {output} ({size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
