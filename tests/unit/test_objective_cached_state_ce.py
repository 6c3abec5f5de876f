"""cached_state_ce: labels per token, one LLM pass per text (cached), the head learns, the wrong adapter refused."""

import pytest
import torch
from torch import nn

from omnikit.components.adapters.ctc_connector import CTCConnector, CTCConnectorConfig
from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.components.objectives.cached_state_ce import CachedStateCEConfig, CachedStateCEObjective
from omnikit.data.char_vocab import CharVocab
from omnikit.interfaces import EncoderOutput


class CTCOnlyEncoder(nn.Module):
    """Features are one-hot characters; the CTC head is the identity, so the 'audio' spells what it holds."""

    def __init__(self):
        super().__init__()
        self.output_dim = self.ctc_vocab_size = CharVocab().size
        self.ctc_head = nn.Linear(self.output_dim, self.output_dim)
        with torch.no_grad():
            self.ctc_head.weight.copy_(torch.eye(self.output_dim))
            self.ctc_head.bias.zero_()
        self.calls = 0

    def forward(self, feats, lens):
        self.calls += 1
        return EncoderOutput(hidden=feats, lens=lens, ctc_logits=self.ctc_head(feats))


def spelled(texts):
    """One-hot 'features' that make the connector hear each text (a blank between letters, blanks after)."""
    vocab = CharVocab()
    rows = [[i for c in vocab.encode(t) for i in (c, 0)] + [0] * 4 for t in texts]
    feats = torch.zeros(len(rows), max(map(len, rows)), vocab.size)
    for b, r in enumerate(rows):
        feats[b, torch.arange(len(r)), torch.tensor(r)] = 1.0
    return feats, torch.tensor([len(r) for r in rows])


@pytest.fixture()
def model():
    torch.manual_seed(0)
    llm = HFCausalLM(HFCausalLMConfig(model="random:llama", device="cpu", dtype="float32", prompt_embeddings=0))
    con = CTCConnector(CTCConnectorConfig(), in_dim=39, out_dim=llm.hidden_size, encoder=CTCOnlyEncoder(), llm=llm)
    return nn.ModuleDict({"llm": llm, "adapter": con, "encoder": con._parts[0]})


BATCH = {"text": ["What is the capital of France?", "The oceans are teeming with life.", "Hello"],
         "kind": ["fact", "plain", "open"], "cut_ids": ["a", "b", "c"]}


def test_one_llm_pass_per_text_and_the_head_learns(model, monkeypatch):
    obj = CachedStateCEObjective(CachedStateCEConfig(class_weights=[1.0, 2.0, 2.0]))
    calls = []
    real = model["llm"].forward_train
    monkeypatch.setattr(model["llm"], "forward_train", lambda *a, **k: calls.append(1) or real(*a, **k))
    head = model["llm"].state_head
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(40):
        out = obj(model, dict(BATCH))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["loss"])
    assert len(calls) == 1  # the three texts in one pass, then the cache
    assert float(out["loss"]) < 0.5 * first
    assert float(out["acc"]) >= 0.8
    assert all(not p.requires_grad for p in model["llm"].llm.parameters())


def test_labels_follow_the_connector_tokens(model):
    obj = CachedStateCEObjective(CachedStateCEConfig())
    con = model["adapter"]
    obj(model, {"text": ["What is the capital of France?"], "kind": ["fact"], "cut_ids": ["a"]})
    ids = con.token_ids(["what", "is", "the", "capital", "of", "france"])
    assert [k[1] for k in obj._states] == [tuple(ids)]
    states = obj._cached(model["llm"], [list(ids)])[0]
    assert states.shape == (len(ids), model["llm"].hidden_size)


def test_cache_key_has_the_llm_fingerprint(model):
    obj = CachedStateCEObjective(CachedStateCEConfig())
    obj(model, dict(BATCH))
    assert {k[0] for k in obj._states} == {model["llm"].fingerprint()}


def test_needs_the_connector(model):
    model["adapter"] = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="ctc_connector"):
        CachedStateCEObjective(CachedStateCEConfig())(model, dict(BATCH))


def test_heard_text_is_what_the_connector_hears_once_per_cut(model):
    obj = CachedStateCEObjective(CachedStateCEConfig(text="both"))
    assert obj.inputs == ("feats",)
    feats, lens = spelled(["what is the capitl of france"])
    batch = {"text": ["What is the capital of France?"], "kind": ["fact"], "cut_ids": ["q1"],
             "feats": feats, "feat_lens": lens}
    obj(model, dict(batch))
    obj(model, dict(batch))
    con = model["adapter"]
    heard = con.token_ids(["what", "is", "the", "capitl", "of", "france"])
    written = con.token_ids(["what", "is", "the", "capital", "of", "france"])
    assert {k[1] for k in obj._states} == {tuple(heard), tuple(written)}
    assert model["encoder"].calls == 1  # the heard words of a cut are computed once


def test_text_source_is_checked():
    with pytest.raises(ValueError, match="heard"):
        CachedStateCEObjective(CachedStateCEConfig(text="audio"))
    assert CachedStateCEObjective(CachedStateCEConfig()).inputs == ()
