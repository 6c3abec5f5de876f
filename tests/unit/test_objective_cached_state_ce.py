"""cached_state_ce: labels per token, one LLM pass per text (cached), the head learns, the wrong adapter refused."""

import pytest
import torch
from torch import nn

from omnikit.components.adapters.ctc_connector import CTCConnector, CTCConnectorConfig
from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.components.objectives.cached_state_ce import CachedStateCEConfig, CachedStateCEObjective
from omnikit.data.char_vocab import CharVocab


class CTCOnlyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.output_dim = self.ctc_vocab_size = CharVocab().size
        self.ctc_head = nn.Linear(self.output_dim, self.output_dim)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    llm = HFCausalLM(HFCausalLMConfig(model="random:llama", device="cpu", dtype="float32", prompt_embeddings=0))
    con = CTCConnector(CTCConnectorConfig(), in_dim=39, out_dim=llm.hidden_size, encoder=CTCOnlyEncoder(), llm=llm)
    return nn.ModuleDict({"llm": llm, "adapter": con})


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
    ids = obj._turn_ids(con, "What is the capital of France?")
    assert ids == con.token_ids(["what", "is", "the", "capital", "of", "france"])
    states = obj._cached(model["llm"], [ids])[0]
    assert states.shape == (len(ids), model["llm"].hidden_size)


def test_cache_key_has_the_llm_fingerprint(model):
    obj = CachedStateCEObjective(CachedStateCEConfig())
    obj(model, dict(BATCH))
    assert {k[0] for k in obj._states} == {model["llm"].fingerprint()}


def test_needs_the_connector(model):
    model["adapter"] = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="ctc_connector"):
        CachedStateCEObjective(CachedStateCEConfig())(model, dict(BATCH))
