"""The matching model: which fields are compared and how (comparisons), what keeps two
records apart (vetoes), which pairs are compared at all (blocking), how pairs are
scored (scoring, and rowwise for a few pairs in Python), why a pair scored as it did
(explain), and finding profiles by anything a customer says (search)."""
