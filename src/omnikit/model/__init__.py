"""A recipe's model and its stage weights: building the slots, reading and writing ``stages/<stage>/`` outputs.

Shared by training, inference, serving and evaluation, and importing none of them (see ``tests/unit/test_layers.py``).
"""
