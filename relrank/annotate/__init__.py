"""`relrank annotate`: collect pairs for an attribute in the browser, the next pair chosen by a ranker that
retrains in the background (README: Annotate your own attribute).

folder (the images, the lock) -> answers (pairs.csv, append-only) -> features and linear (the ranker) ->
selection (the next pair) -> session (the state the server shares) -> server (the page and its JSON API).
"""
