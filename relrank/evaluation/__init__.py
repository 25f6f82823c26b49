"""The paper's metric and the one evaluator every path uses (training, evaluate, RankSVM)."""
