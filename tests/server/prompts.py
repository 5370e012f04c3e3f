"""Prompts that give prompt-lookup (ngram) drafting something to copy, and some that don't."""

COPY_HEAVY = [
    "Repeat this sentence exactly three times: the quick brown fox jumps over the lazy dog.",
    "Copy the list and add one more item: apples, pears, plums, cherries, apricots, peaches.",
    "Rewrite this code with a docstring:\ndef add(a, b):\n    return a + b\n",
    "Say 'hello world' five times, separated by commas.",
    "Here is a poem line: 'the sun sets slowly over the quiet hills'. Repeat it twice.",
]
OPEN_ENDED = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain what a hash table is in two sentences.",
    "Give three tips for learning to cook.",
    "What is 17 times 3?",
    "Name four planets of the solar system.",
]
ALL = COPY_HEAVY + OPEN_ENDED
