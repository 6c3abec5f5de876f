"""The offline speech world: spoken questions, plain speech, duplex streams and assistant speech, synthesised
from packaged voices and fact sources (see ``docs/data/speech_world.md``)."""
