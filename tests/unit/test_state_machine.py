"""State machine on scripted decisions: turns, barge-in, ignore while speaking or idle, commit order."""

from __future__ import annotations

from omnikit.components.duplex.base import Decision as D
from omnikit.inference.state_machine import Action, DialogueState, DialogueStateMachine
from omnikit.inference.state_machine import ActionKind as A
from omnikit.inference.state_machine import DialogueState as S


class FakeSession:
    """Executes actions on a list-of-strings "conversation", to check what ends up in context."""

    def __init__(self) -> None:
        self.committed: list[str] = ["system"]
        self.forks: dict[int, list[str]] = {}
        self.playing: dict[int, list[str]] = {}
        self.log: list[Action] = []

    def run(self, actions: list[Action]) -> None:
        for a in actions:
            self.log.append(a)
            if a.kind is A.FORK_CONVERSATION:
                self.forks[a.turn] = list(self.committed)
            elif a.kind is A.COMMIT_FORK:
                self.committed = self.forks.pop(a.turn)
            elif a.kind is A.DROP_FORK:
                del self.forks[a.turn]
            elif a.kind is A.START_ANSWER:
                self.playing[a.answer] = []
            elif a.kind is A.INTERRUPT_ANSWER:
                del self.playing[a.answer]
            elif a.kind is A.ANSWER_FINISHED:
                del self.playing[a.answer]
            elif a.kind is A.RESET_CONVERSATION:
                self.committed = ["system"]

    def hear(self, sm: DialogueStateMachine, words: str) -> None:
        assert sm.fork_open
        self.forks[sm.turn].append(f"user:{words}")

    def say(self, sm: DialogueStateMachine, token: str) -> None:
        """Answer tokens join the committed conversation as they are generated (as in the paper's server)."""
        self.playing[sm.answer].append(token)
        self.committed.append(f"bot:{token}")


def test_simple_turn_fork_commit_answer_finish():
    sm, s = DialogueStateMachine(), FakeSession()
    assert sm.state is S.LISTENING and not sm.fork_open
    s.run(sm.speech_start())
    assert sm.state is S.HEARING
    s.hear(sm, "hi")
    assert sm.decide(D.LISTEN) == [] and sm.state is S.HEARING
    actions = sm.decide(D.RESPOND)
    assert [a.kind for a in actions] == [A.COMMIT_FORK, A.START_ANSWER]
    s.run(actions)
    assert sm.state is S.SPEAKING and s.committed == ["system", "user:hi"]
    s.say(sm, "hello")
    s.run(sm.answer_done())
    assert sm.state is S.LISTENING and s.log[-1] == Action(A.ANSWER_FINISHED, answer=1)


def test_barge_in_respond_interrupts_and_keeps_partial_answer():
    sm, s = DialogueStateMachine(), FakeSession()
    s.run(sm.speech_start())
    s.hear(sm, "tell me a story")
    s.run(sm.decide(D.RESPOND))
    s.say(sm, "once")
    s.run(sm.speech_start())  # the user talks over the bot: fork of the conversation as it is now
    assert sm.state is S.SPEAKING_HEARING and sm.fork_open and sm.speaking
    s.say(sm, "upon")  # generated after the fork: not in the new context (paper's server)
    s.hear(sm, "stop")
    assert sm.decide(D.LISTEN) == []
    actions = sm.decide(D.RESPOND)
    assert [a.kind for a in actions] == [A.INTERRUPT_ANSWER, A.COMMIT_FORK, A.START_ANSWER]
    assert actions[0].answer == 1 and actions[2].answer == 2
    s.run(actions)
    assert sm.state is S.SPEAKING and sm.answer == 2 and list(s.playing) == [2]
    assert s.committed == ["system", "user:tell me a story", "bot:once", "user:stop"]


def test_ignore_while_speaking_keeps_answer_and_drops_fork():
    sm, s = DialogueStateMachine(), FakeSession()
    s.run(sm.speech_start())
    s.hear(sm, "question")
    s.run(sm.decide(D.RESPOND))
    s.say(sm, "answer")
    s.run(sm.speech_start())
    s.hear(sm, "mm-hmm")
    actions = sm.decide(D.IGNORE)
    assert actions == [Action(A.DROP_FORK, turn=2)]
    s.run(actions)
    assert sm.state is S.SPEAKING and sm.answer == 1 and list(s.playing) == [1]
    s.say(sm, "continues")
    assert "user:mm-hmm" not in s.committed and s.forks == {}
    s.run(sm.answer_done())
    assert s.committed == ["system", "user:question", "bot:answer", "bot:continues"]


def test_ignore_while_idle_leaves_no_trace():
    sm, s = DialogueStateMachine(), FakeSession()
    s.run(sm.speech_start())
    s.hear(sm, "cough")
    s.run(sm.decide(D.IGNORE))
    assert sm.state is S.LISTENING and s.committed == ["system"] and s.forks == {}
    assert [a.kind for a in s.log] == [A.FORK_CONVERSATION, A.DROP_FORK]
    assert sm.decide(D.RESPOND) == []  # a stray decision without an open turn does nothing


def test_multi_turn_commit_order():
    sm, s = DialogueStateMachine(), FakeSession()
    for turn, words in enumerate(["one", "two", "three"], start=1):
        s.run(sm.speech_start())
        assert sm.turn == turn
        s.hear(sm, words)
        s.run(sm.decide(D.RESPOND))
        s.say(sm, f"re-{words}")
        s.run(sm.answer_done())
    commits = [a.turn for a in s.log if a.kind is A.COMMIT_FORK]
    assert commits == [1, 2, 3]
    assert s.committed == [
        "system",
        "user:one",
        "bot:re-one",
        "user:two",
        "bot:re-two",
        "user:three",
        "bot:re-three",
    ]


def test_answer_finishing_during_barge_in_keeps_hearing_and_stale_done_is_ignored():
    sm, s = DialogueStateMachine(), FakeSession()
    s.run(sm.speech_start())
    s.run(sm.decide(D.RESPOND))
    s.run(sm.speech_start())
    s.run(sm.answer_done())
    assert sm.state is S.HEARING and sm.fork_open
    s.run(sm.decide(D.RESPOND))  # no answer running any more: nothing to interrupt
    assert A.INTERRUPT_ANSWER not in [a.kind for a in s.log]
    assert sm.answer_done(answer=1) == []  # late report of an old answer
    assert sm.state is S.SPEAKING


def test_speech_start_while_fork_open_is_a_no_op_and_reset_stops_everything():
    sm, s = DialogueStateMachine(), FakeSession()
    s.run(sm.speech_start())
    s.run(sm.decide(D.RESPOND))
    s.run(sm.speech_start())
    assert sm.speech_start() == []
    actions = sm.reset()
    assert actions == [
        Action(A.INTERRUPT_ANSWER, answer=1),
        Action(A.DROP_FORK, turn=2),
        Action(A.RESET_CONVERSATION),
    ]
    s.run(actions)
    assert sm.state is DialogueState.LISTENING and s.committed == ["system"] and s.playing == {}
