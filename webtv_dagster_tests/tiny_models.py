"""Weights folders of tiny random-weight models, laid out as the published ones are: LTX-Video
(diffusers' LTXPipeline), its latent upsampler, and MusicGen (transformers). Each model is
built from a small config, as diffusers' and transformers' own tests build theirs, with a
tokenizer made here, so nothing is downloaded. The real model code loads them unchanged.

`real_size=True` builds the published configurations instead (still random weights): what the
model benchmark times on a GPU, where speed does not depend on the weights' values.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "a an the of in on at with and to by from llama llamas chef pilot doctor painter kitchen "
    "city night day sun rain snow camera slow fast close wide shot scene pixar style music "
    "calm upbeat jazz piano drums warm cheerful orchestral soft"
).split()


def _tokenizer(max_length: int):
    """A word-level tokenizer over WORDS, with T5's special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in WORDS:
        vocabulary.setdefault(word, len(vocabulary))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


def _t5_config(vocabulary: int, **sizes):
    """A T5 encoder's config: one tiny layer, or `sizes`."""
    from transformers import T5Config

    tiny = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4}
    return T5Config(vocab_size=vocabulary, **(sizes or tiny))


def ltx_video_weights(folder: Path, real_size: bool = False) -> Path:
    """An LTXPipeline folder (model_index.json, transformer, vae, text_encoder, tokenizer,
    scheduler). Tiny: a one-layer transformer and a VAE with LTX-Video's compression (32x in
    space, 8x in time), so latents have the real model's shape for a given video."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5EncoderModel

    torch.manual_seed(0)
    tokenizer = _tokenizer(max_length=128)
    if real_size:  # the classes' defaults are LTX-Video's published configuration
        transformer, vae = LTXVideoTransformer3DModel(), AutoencoderKLLTXVideo()
        t5_xxl = {"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64}
        config = _t5_config(len(tokenizer), feed_forward_proj="gated-gelu", **t5_xxl)
        text_encoder = T5EncoderModel(config)
    else:
        transformer = LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=4,
            attention_head_dim=8,
            cross_attention_dim=32,
            num_layers=1,
            caption_channels=32,
        )
        vae = AutoencoderKLLTXVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, True, False),
            decoder_spatio_temporal_scaling=(True, True, True, False),
            decoder_inject_noise=(False,) * 5,
            upsample_residual=(False,) * 4,
            upsample_factor=(1,) * 4,
            timestep_conditioning=False,
            patch_size=4,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        )
        text_encoder = T5EncoderModel(_t5_config(len(tokenizer)))
    pipeline = LTXPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipeline.save_pretrained(folder)
    return folder


def ltx_upsampler_weights(folder: Path, real_size: bool = False) -> Path:
    """A folder with latent_upsampler/, as Lightricks' spatial upscaler is published (its VAE
    is the video model's)."""
    import torch
    from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

    torch.manual_seed(0)
    if real_size:
        upsampler = LTXLatentUpsamplerModel()
    else:
        upsampler = LTXLatentUpsamplerModel(
            in_channels=8, mid_channels=32, num_blocks_per_stage=1, dims=3
        )
    upsampler.save_pretrained(folder / "latent_upsampler")
    return folder


# MusicGen's EnCodec: 32 kHz mono, 50 frames a second (hop 8*5*4*4 = 640), one bandwidth.
ENCODEC_32KHZ = {
    "sampling_rate": 32000,
    "audio_channels": 1,
    "target_bandwidths": [2.2],
    "upsampling_ratios": [8, 5, 4, 4],
    "norm_type": "weight_norm",
    "use_causal_conv": False,
    "compress": 2,
}


def musicgen_weights(folder: Path, real_size: bool = False) -> Path:
    """A MusicgenForConditionalGeneration folder with its tokenizer. Tiny: a one-layer T5, a
    one-layer decoder over 4 codebooks of 64 codes, and an EnCodec at 32 kHz with the real
    model's 50 frames a second (hop 640), so a second of music costs 50 decoding steps."""
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
    )

    torch.manual_seed(0)
    tokenizer = _tokenizer(max_length=128)
    if real_size:  # facebook/musicgen-small
        t5_base = {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}
        text = _t5_config(len(tokenizer), **t5_base)
        audio = EncodecConfig(
            **ENCODEC_32KHZ, num_filters=64, codebook_size=2048, num_lstm_layers=2, hidden_size=128
        )
        codes, decoder = (
            2048,
            {
                "hidden_size": 1024,
                "num_hidden_layers": 24,
                "num_attention_heads": 16,
                "ffn_dim": 4096,
            },
        )
    else:
        text = _t5_config(len(tokenizer))
        audio = EncodecConfig(
            **ENCODEC_32KHZ,
            num_filters=4,
            codebook_size=64,
            codebook_dim=32,
            hidden_size=32,
            num_residual_layers=1,
            num_lstm_layers=1,
        )
        codes, decoder = (
            64,
            {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "ffn_dim": 64},
        )
    decoder_config = MusicgenDecoderConfig(
        vocab_size=codes,
        num_codebooks=audio.num_quantizers,
        max_position_embeddings=4096,
        pad_token_id=codes,
        bos_token_id=codes,
        **decoder,
    )
    config = MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder_config.to_dict()
    )
    model = MusicgenForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = codes
    model.generation_config.pad_token_id = codes
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_weights(folder: Path) -> dict[str, Path]:
    """Every tiny model's folder under `folder`, by the name `webtv spaces --model` knows."""
    return {
        "ltx-video": ltx_video_weights(folder / "ltx-video"),
        "ltx-upsampler": ltx_upsampler_weights(folder / "ltx-upsampler"),
        "musicgen": musicgen_weights(folder / "musicgen"),
    }
