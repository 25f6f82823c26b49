"""Using trained rankers: scoring, RankSVM, evaluating finished runs, saliency, embeddings, figures."""
