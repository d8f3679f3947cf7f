"""Build the tiny LLaVA-style vision-language model the multimodal example and tests start from.

The trainer loads a multimodal base with ``AutoModelForImageTextToText.from_pretrained`` and
``AutoProcessor.from_pretrained``; this script makes a real Hugging Face model folder (config.json,
model.safetensors, the processor with its tokenizer, image processor and chat template) small
enough to ship in the repository (about 400 KB), so the example runs with no network and goes
through exactly the loading code a 7B LLaVA does.

The vision tower is a 2-layer CLIP encoder on 32x32 images in 8x8 patches (16 image tokens per
image), the projector LLaVA's two-layer MLP, the language model the tiny Llama of
``build_tiny_llama.py`` (same sizes, same tokenizer plus an ``<image>`` token). Weights are random
(seeded): a stand-in for a pretrained base, not a useful model. The image processor is the Pillow
one (no torchvision needed).

Usage::

    python examples/models/build_tiny_llava.py [OUTPUT_DIR]   # default: examples/models/tiny-llava
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "tiny-llava"
TOKENIZER = HERE / "tiny-llama"

IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 32
PATCH_SIZE = 8
# The tiny Llama's roles and turn ends; a message's content is a string or a list of text and
# image parts, an image part rendered as the image token the processor expands.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '" + IMAGE_TOKEN + "' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_processor(output: Path) -> None:
    from transformers import AutoTokenizer, CLIPImageProcessorPil, LlavaProcessor

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        # CLIP adds a CLS token, which LLaVA's "default" feature selection drops again.
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    processor.save_pretrained(output)


def build_model(output: Path) -> None:
    import torch
    from transformers import AutoTokenizer, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(output)
    image_token = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert isinstance(image_token, int)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        # As for the tiny Llama: large enough that LoRA on a frozen random model can lower the loss.
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT, help="Model folder to write.")
    args = parser.parse_args()
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    build_processor(output)
    build_model(output)
    size = sum(f.stat().st_size for f in output.iterdir())
    print(f"wrote {output} ({size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
