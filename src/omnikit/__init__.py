"""omnikit: speech-to-speech dialogue on a frozen text LLM, as composable plugins."""

__version__ = "0.1.0"
