import pytest
import torch

from mesm.data.batch import SequenceInput, TokenInput
from mesm.data.collate import FACE_MEAN, FACE_STD, Collator, normalize_faces, pad_sequences


def _item(uid: str, n_faces: int, n_chunks: int, label: int, num_classes: int = 6) -> dict:
    labels = torch.zeros(num_classes)
    labels[label] = 1.0
    return {
        "id": uid,
        "faces": torch.full((n_faces, 3, 48, 48), 200, dtype=torch.uint8),
        "audio": torch.arange(n_chunks, dtype=torch.float32)
        .view(n_chunks, 1, 1, 1)
        .expand(n_chunks, 1, 128, 32),
        "text": f"sentence {uid}",
        "labels": labels,
    }


class _WhitespaceTokenizer:
    """Enough of a Hugging Face tokenizer's call signature for the collator."""

    def __call__(self, texts, padding, truncation, max_length, return_tensors):
        ids = [
            [101] + [len(word) for word in text.split()][: max_length - 2] + [102] for text in texts
        ]
        width = max(len(row) for row in ids)
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        attention = torch.zeros(len(ids), width, dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            attention[row, : len(tokens)] = 1
        return {"input_ids": input_ids, "attention_mask": attention}


def test_pad_sequences_lengths_mask_and_values():
    padded = pad_sequences([torch.ones(2, 1, 4, 3), torch.full((5, 1, 4, 3), 2.0)])
    assert padded.values.shape == (2, 5, 1, 4, 3)
    assert padded.lengths.tolist() == [2, 5]
    assert padded.mask.tolist() == [[True, True, False, False, False], [True] * 5]
    assert padded.values[0, 2:].abs().sum() == 0
    assert torch.all(padded.values[1] == 2.0)


def test_pad_sequences_rejects_empty_and_mismatched_items():
    with pytest.raises(ValueError, match="at least one"):
        pad_sequences([torch.ones(0, 1, 4, 3)])
    with pytest.raises(ValueError, match="item 1 has maps of shape"):
        pad_sequences([torch.ones(1, 1, 4, 3), torch.ones(1, 1, 4, 4)])


def test_normalize_faces_uses_mesm_constants():
    pixel = torch.tensor(FACE_MEAN).view(1, 3, 1, 1) + torch.tensor(FACE_STD).view(1, 3, 1, 1)
    assert torch.allclose(normalize_faces(pixel), torch.ones(1, 3, 1, 1))


def test_collator_builds_every_modality():
    collate = Collator(tokenizer=_WhitespaceTokenizer(), text_max_len=4)
    batch = collate([_item("a", 3, 2, label=0), _item("b", 1, 4, label=5)])
    assert batch.ids == ["a", "b"]
    assert batch.labels.argmax(dim=1).tolist() == [0, 5]
    vision, audio, text = batch.inputs["vision"], batch.inputs["audio"], batch.inputs["text"]
    assert isinstance(vision, SequenceInput) and isinstance(audio, SequenceInput)
    assert isinstance(text, TokenInput)
    assert vision.values.shape == (2, 3, 3, 48, 48) and vision.lengths.tolist() == [3, 1]
    assert audio.values.shape == (2, 4, 1, 128, 32) and audio.lengths.tolist() == [2, 4]
    # Padded face steps are zero, real ones normalised (200 -> (200 - mean) / std).
    assert vision.values[1, 1:].abs().sum() == 0
    expected = (200 - FACE_MEAN[0]) / FACE_STD[0]
    assert torch.allclose(vision.values[0, :, 0], torch.full((3, 48, 48), expected))
    assert audio.values[1, 3, 0, 0, 0] == 3.0
    # Truncation to text_max_len tokens, [CLS] first.
    assert text.input_ids.shape == (2, 4) and torch.all(text.input_ids[:, 0] == 101)


def test_collator_subset_of_modalities_and_errors():
    batch = Collator(modalities=("audio",))([_item("a", 1, 1, label=2)])
    assert set(batch.inputs) == {"audio"}
    with pytest.raises(ValueError, match="needs a tokenizer"):
        Collator(modalities=("text", "audio"))
    with pytest.raises(ValueError, match="non-empty subset"):
        Collator(modalities=("smell",))
