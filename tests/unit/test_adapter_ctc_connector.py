"""CTC connector: greedy CTC over chunks, words closed by spaces or pauses, the LLM's own token embeddings."""

import pytest
import torch
from torch import nn

from omnikit.components.adapters.ctc_connector import CTCConnector, CTCConnectorConfig
from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.data.char_vocab import BLANK, CharVocab

VOCAB = CharVocab()


class OneHotEncoder(nn.Module):
    """An encoder whose CTC head is the identity: input frames are one-hot CTC ids."""

    def __init__(self):
        super().__init__()
        self.output_dim = self.ctc_vocab_size = VOCAB.size
        self.ctc_head = nn.Linear(VOCAB.size, VOCAB.size, bias=False)
        with torch.no_grad():
            self.ctc_head.weight.copy_(torch.eye(VOCAB.size))


@pytest.fixture(scope="module")
def llm():
    torch.manual_seed(0)
    return HFCausalLM(HFCausalLMConfig(model="random:llama", device="cpu", dtype="float32", prompt_embeddings=0))


def frames(spelling: str) -> torch.Tensor:
    """``"hh_i_ _t"``: one frame per character, ``_`` = blank."""
    ids = [BLANK if c == "_" else VOCAB.symbols.index(c) for c in spelling]
    return torch.nn.functional.one_hot(torch.tensor(ids), VOCAB.size).float()[None]


def connector(llm, **kw):
    return CTCConnector(CTCConnectorConfig(**kw), in_dim=VOCAB.size, out_dim=llm.hidden_size,
                        encoder=OneHotEncoder(), llm=llm)


def test_greedy_ctc_words_and_tokens(llm):
    con = connector(llm, close_after_blanks=3)
    x = frames("__wwhh_a_tt_  _iis_ _ii_i_tt______")  # repeats merge, a blank splits "i_i"
    assert con.transcript(x, torch.tensor([x.shape[1]])) == ["what is iit"]
    emb, n = con(x, torch.tensor([x.shape[1]]))
    ids = llm.tokenize("What") + llm.tokenize(" is") + llm.tokenize(" iit")
    assert int(n[0]) == len(ids) == emb.shape[1]
    assert torch.equal(emb[0], llm.embed(ids))
    assert list(con.parameters()) == [] and con.state_dict() == {}  # no weights of the encoder or LLM inside


@pytest.mark.parametrize("sizes", [[4] * 10, [1, 7, 2, 9, 3, 20], [40]])
def test_streaming_equals_offline(llm, sizes):
    con = connector(llm, close_after_blanks=2)
    x = frames("_tth_ee __ccaa_t__ ss_aatt_____oon_ tthe_ mma_t_")
    state, outs, i = con.init_state(), [], 0
    for n in sizes:
        y, state = con.forward_chunk(x[:, i : i + n], state)
        outs.append(y)
        i += n
    y, state = con.forward_chunk(x[:, i:], state)
    tail, state = con.flush(state)
    streamed = torch.cat([*outs, y, tail], dim=1)
    offline, n = con(x, torch.tensor([x.shape[1]]))
    assert state.text == "the cat sat on the mat" == con.transcript(x, torch.tensor([x.shape[1]]))[0]
    assert streamed.shape == offline.shape and torch.equal(streamed, offline)


def test_a_pause_closes_the_last_word_without_flush(llm):
    con = connector(llm, close_after_blanks=3)
    state = con.init_state()
    y, state = con.forward_chunk(frames("hhi"), state)
    assert y.shape[1] == 0 and state.word == "hi"
    y, state = con.forward_chunk(frames("__"), state)
    assert y.shape[1] == 0  # two blanks: still open
    y, state = con.forward_chunk(frames("_"), state)
    assert y.shape[1] == len(llm.tokenize("Hi")) and state.words == ["hi"] and state.word == ""


def test_batch_lengths_and_padding(llm):
    con = connector(llm)
    a, b = frames("hi_"), frames("hel_lo_ there__")
    x = torch.zeros(2, b.shape[1], VOCAB.size)
    x[0, :3], x[1] = a[0], b[0]
    x[0, 3:, BLANK] = 1.0
    emb, n = con(x, torch.tensor([3, b.shape[1]]))
    assert n.tolist() == [len(llm.tokenize("Hi")), len(llm.tokenize("Hello") + llm.tokenize(" there"))]
    assert emb.shape == (2, int(n.max()), llm.hidden_size)
    assert emb[0, int(n[0]):].abs().sum() == 0


def test_clear_errors(llm):
    with pytest.raises(ValueError, match="CTC head"):
        CTCConnector(CTCConnectorConfig(), in_dim=8, out_dim=8, encoder=nn.Linear(2, 2), llm=llm)
    with pytest.raises(ValueError, match="model.llm"):
        CTCConnector(CTCConnectorConfig(), in_dim=8, out_dim=8, encoder=OneHotEncoder(), llm=None)
    with pytest.raises(ValueError, match="close_after_blanks"):
        connector(llm, close_after_blanks=0)
