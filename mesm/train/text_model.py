"""The offline demo's text encoder: a WordPiece tokenizer and a small BERT trained from scratch.

The paper fine-tunes pretrained ALBERT, which needs the model hub. The demo config instead
chooses, explicitly, this encoder: a subword tokenizer trained on the TRAINING transcripts only and
a small randomly initialised ``BertModel``, saved together into one folder that
``AutoTokenizer.from_pretrained(folder)`` and ``AutoModel.from_pretrained(folder)`` load like any
hub model. It is never a silent fallback for a model that failed to load.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from mesm.models.encoders import quiet_transformers

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CONTINUATION_PREFIX = "##"


def learn_wordpiece_vocabulary(
    word_counts: Mapping[str, int], vocab_size: int, min_frequency: int = 2
) -> dict[str, int]:
    """A WordPiece vocabulary learned by frequency-ranked merges, deterministically.

    ``tokenizers``' own WordPieceTrainer breaks ties between equally frequent merges in hash-map
    order, which changes from process to process (the same texts gave different vocabularies), so
    the merges are learned here with an explicit tie-break: highest count, then the
    lexicographically smallest pair. Words start as characters, non-initial ones carrying the
    ``##`` continuation prefix; each merge joins the most frequent adjacent pair into a new token.

    Args:
        word_counts: pre-tokenised, normalised training words and their counts.
        vocab_size: maximum vocabulary size, special tokens and the alphabet included.
        min_frequency: a pair seen fewer times is never merged.

    Returns:
        token -> id: special tokens, then the alphabet (sorted), then merges in the order learned.
    """
    words = {
        word: [word[0], *(CONTINUATION_PREFIX + char for char in word[1:])]
        for word in sorted(word_counts)
        if word
    }
    alphabet = sorted({symbol for symbols in words.values() for symbol in symbols})
    tokens = [*SPECIAL_TOKENS, *alphabet]
    known = set(tokens)
    while len(tokens) < vocab_size:
        pair_counts: Counter[tuple[str, str]] = Counter()
        for word, symbols in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pair_counts[pair] += word_counts[word]
        if not pair_counts:
            break
        best, count = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
        if count < min_frequency:
            break
        merged = best[0] + best[1].removeprefix(CONTINUATION_PREFIX)
        for word, symbols in words.items():
            if len(symbols) < 2:
                continue
            joined: list[str] = []
            index = 0
            while index < len(symbols):
                if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == best:
                    joined.append(merged)
                    index += 2
                else:
                    joined.append(symbols[index])
                    index += 1
            words[word] = joined
        if merged not in known:
            known.add(merged)
            tokens.append(merged)
    return {token: index for index, token in enumerate(tokens)}


def _import_hugging_face() -> tuple[object, object]:
    try:
        import tokenizers
        import transformers
    except ImportError as error:  # pragma: no cover - both are core dependencies
        raise ImportError(
            "the demo text encoder needs `tokenizers` and `transformers`: run `uv sync`"
        ) from error
    return tokenizers, transformers


def build_text_model(
    train_texts: Iterable[str],
    out_dir: str | os.PathLike[str],
    *,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 128,
    max_positions: int = 64,
    seed: int = 0,
) -> Path:
    """Train a WordPiece tokenizer on ``train_texts`` and save it with a fresh small BERT.

    Deterministic given ``seed`` and the texts (the vocabulary comes from
    :func:`learn_wordpiece_vocabulary`; the weights from ``seed``; the global RNG is untouched).

    Args:
        train_texts: the TRAINING split's transcripts only (validation/test text must not shape
            the vocabulary).
        out_dir: folder to write; loadable with ``AutoTokenizer``/``AutoModel.from_pretrained``.
        vocab_size: maximum WordPiece vocabulary size (special tokens and alphabet included).
        hidden_size: BERT hidden size (the [CLS] feature size).
        num_layers: Transformer layers.
        num_heads: attention heads (must divide ``hidden_size``).
        intermediate_size: feed-forward size.
        max_positions: maximum sequence length (>= the run's text max length).
        seed: weight-initialisation seed.

    Returns:
        ``out_dir`` as a Path.
    """
    _import_hugging_face()
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    texts = [text for text in train_texts if text and text.strip()]
    if not texts:
        raise ValueError("cannot train a tokenizer: no non-empty training transcript was given")
    if hidden_size % num_heads:
        raise ValueError(f"num_heads ({num_heads}) must divide hidden_size ({hidden_size})")

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    word_counts: Counter[str] = Counter()
    for text in texts:
        pieces = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        word_counts.update(piece for piece, _ in pieces)
    vocabulary = learn_wordpiece_vocabulary(word_counts, vocab_size)
    tokenizer = Tokenizer(models.WordPiece(vocab=vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    # BERT-style framing so the encoder's first position is always the [CLS] feature.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
    )

    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.token_to_id("[PAD]"),
    )
    # Initialise under a private seed without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # With its pooler, so AutoModel.from_pretrained finds every weight it builds (no weight is
        # left to random initialisation at load time, which would break determinism).
        model = BertModel(config)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():  # no "Writing model shards" bar in the middle of a run's output
        wrapped.save_pretrained(out)
        model.save_pretrained(out)
    return out


__all__ = ["SPECIAL_TOKENS", "build_text_model"]
