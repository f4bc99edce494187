"""A tiny, randomly initialised LLaVA-style model built from a config in code, for CI and
demos: a 2-layer CLIP vision tower, a projector and a 2-layer Llama language model, with a
word-level tokenizer trained offline (the `tokenizers` package) on the texts of the items.

It is saved as an ordinary Hugging Face model folder (config, safetensors, tokenizer,
processor, chat template), so it runs through exactly the code path of real weights:
`AutoProcessor` + `AutoModelForImageTextToText` from a local path. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
IMAGE_TOKEN = "<image>"
# "USER: <image> {prompt} ASSISTANT:" - words of the template join the vocabulary.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %} </s> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
TEMPLATE_WORDS = "USER : ASSISTANT : A B C D E F G H I J"
# The base model is the same for every trial of a campaign: trials differ in how they
# fine-tune it, as with real pretrained weights.
BASE_SEED = 0


def patch_size_for(image_size: int) -> int:
    """The largest patch that still cuts the image into at least 4 x 4 patches."""
    candidates = [p for p in range(1, image_size + 1) if image_size % p == 0 and image_size // p >= 4]
    return max(candidates) if candidates else 1


def build_tiny_model(
    texts: Iterable[str],
    dest: Path,
    *,
    image_size: int = 32,
    hidden: int = 64,
    layers: int = 2,
) -> Path:
    """Train the tokenizer on `texts`, build the model with BASE_SEED and save both to `dest`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.clip import image_processing_pil_clip

    from medloop.experiments.vlm.hf import quiet_transformers

    tf: Any = transformers  # partly typed library: used through Any
    pil_clip: Any = image_processing_pil_clip
    quiet_transformers()

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1)
    tokenizer.train_from_iterator([TEMPLATE_WORDS, *texts], trainer)
    fast = tf.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )
    patch = patch_size_for(image_size)
    image_processor = pil_clip.CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = tf.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=fast,
        chat_template=CHAT_TEMPLATE,
        patch_size=patch,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # the CLS token the "default" strategy drops
    )
    vision = tf.CLIPVisionConfig(
        hidden_size=hidden // 2,
        intermediate_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
    )
    text = tf.LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    config = tf.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=fast.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(BASE_SEED)
        model = tf.LlavaForConditionalGeneration(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest
