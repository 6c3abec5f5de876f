"""CTC on transcripts over the encoder's CTC head (input stage 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from omnikit.components.objectives._speech import encode_speech
from omnikit.data.char_vocab import BLANK, CharVocab
from omnikit.registry import param


@dataclass
class CTCConfig:
    zero_infinity: bool = param(True, "Zero the loss of utterances too short for their transcript instead of inf.")


class CTCObjective:
    """CTC loss of the encoder's CTC head against character transcripts.

    The character vocabulary is :class:`omnikit.data.char_vocab.CharVocab` (it normalises the text: lower case,
    no punctuation), the one the encoder's CTC head is sized for (``encoder.ctc_vocab_size``). The loss is averaged over utterances (each utterance's loss divided
    by its target length, as ``torch.nn.functional.ctc_loss(reduction="mean")`` does).
    """

    config_class = CTCConfig
    inputs = ("feats",)

    def __init__(self, config: CTCConfig, **_: Any):
        self.config = config
        self._vocab: Any = None

    def vocab(self) -> Any:
        if self._vocab is None:
            self._vocab = CharVocab()
        return self._vocab

    def __call__(self, model: torch.nn.ModuleDict, batch: dict[str, Any]) -> dict[str, Tensor]:
        enc = encode_speech(model, batch)
        if enc.ctc_logits is None:
            raise ValueError("the `ctc` objective needs an encoder with a CTC head (ctc_vocab_size > 0)")
        vocab = self.vocab()
        ids = [torch.as_tensor(vocab.encode(t), dtype=torch.long) for t in batch["text"]]
        target_lens = torch.tensor([len(i) for i in ids], dtype=torch.long)
        targets = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)
        log_probs = F.log_softmax(enc.ctc_logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
        loss = F.ctc_loss(
            log_probs, targets, enc.lens.cpu(), target_lens, blank=BLANK,
            reduction="mean", zero_infinity=self.config.zero_infinity,
        )
        return {"loss": loss}
