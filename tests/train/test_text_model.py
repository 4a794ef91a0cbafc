"""The offline demo text encoder: loadable by Auto classes, deterministic, training text only."""

from __future__ import annotations

import hashlib

import pytest
import torch

from mesm.train.text_model import build_text_model, learn_wordpiece_vocabulary

TRAIN_TEXTS = [
    "Excuse me.",
    "I am so angry right now!",
    "That is wonderful news, I am thrilled.",
    "Why would you do that to me?",
    "I don't know what to say anymore.",
    "We could go to the beach tomorrow.",
    "Angry, angrier, the angriest of all.",
] * 5


def _folder_digest(folder) -> str:
    digest = hashlib.sha256()
    for name in ("tokenizer.json", "model.safetensors"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def text_model_dir(tmp_path_factory):
    return build_text_model(TRAIN_TEXTS, tmp_path_factory.mktemp("text"), vocab_size=120, seed=0)


def test_auto_classes_load_tokenizer_and_model(text_model_dir):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text_model_dir)
    model = AutoModel.from_pretrained(text_model_dir)
    encoded = tokenizer(
        ["I am so angry", "wonderful"],
        padding="max_length",
        truncation=True,
        max_length=10,
        return_tensors="pt",
    )
    ids = encoded["input_ids"]
    assert ids.shape == (2, 10)
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    assert tokens[:5] == ["[CLS]", "i", "am", "so", "angry"] and tokens[5] == "[SEP]"
    assert tokens[-1] == "[PAD]" and encoded["attention_mask"][0, -1] == 0
    assert tokenizer.unk_token == "[UNK]" and tokenizer.mask_token == "[MASK]"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.config.max_position_embeddings == 64
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    assert hidden.shape == (2, 10, 64) and torch.isfinite(hidden).all()


def test_unseen_words_become_subwords_or_unknown(text_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text_model_dir)
    # Vocabulary comes from the training texts only: a word never seen is split or [UNK].
    assert "xylophone" not in tokenizer.get_vocab()
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("xylophone")["input_ids"])[1:-1]
    assert pieces == ["[UNK]"] or len(pieces) > 1
    # A word seen in training but outside the merges is spelled with ## continuation pieces.
    angriest = tokenizer.convert_ids_to_tokens(tokenizer("angriest")["input_ids"])[1:-1]
    assert angriest[0].startswith("angr") and all(p.startswith("##") for p in angriest[1:])


def test_vocabulary_learning_by_hand():
    # "low" x5, "lower" x2: pairs (l,##o) 7 and (##o,##w) 7 tie -> lexicographic: ("##o", "##w")
    # first ("#" < "l"), then ("l", "##ow") 7; then ("##e", "##r") and ("low", "##e") tie at 2:
    # ("##e", "##r") first, then ("low", "##er") 2.
    vocabulary = learn_wordpiece_vocabulary({"low": 5, "lower": 2}, vocab_size=100)
    tokens = list(vocabulary)
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tokens[5:10] == ["##e", "##o", "##r", "##w", "l"]
    assert tokens[10:] == ["##ow", "low", "##er", "lower"]
    assert list(learn_wordpiece_vocabulary({"low": 5, "lower": 2}, vocab_size=11))[10:] == ["##ow"]


def test_deterministic_given_seed_and_texts(text_model_dir, tmp_path):
    again = build_text_model(TRAIN_TEXTS, tmp_path / "again", vocab_size=120, seed=0)
    other_seed = build_text_model(TRAIN_TEXTS, tmp_path / "other", vocab_size=120, seed=1)
    assert _folder_digest(again) == _folder_digest(text_model_dir)
    assert _folder_digest(other_seed) != _folder_digest(text_model_dir)


def test_global_rng_untouched(tmp_path):
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    build_text_model(TRAIN_TEXTS, tmp_path, vocab_size=120, seed=3)
    torch.testing.assert_close(torch.rand(2), expected)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no non-empty training transcript"):
        build_text_model(["", "  "], tmp_path)
    with pytest.raises(ValueError, match="must divide hidden_size"):
        build_text_model(TRAIN_TEXTS, tmp_path, hidden_size=64, num_heads=3)
