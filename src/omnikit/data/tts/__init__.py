"""Offline text-to-speech engines used to synthesise training and evaluation speech."""
