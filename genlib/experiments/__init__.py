"""Each chapter's experiments: their quick and full sizes declared in one place, runs cached."""
