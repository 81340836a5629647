"""Why a model answered what it did: per-input contributions (exact Shapley values in the model's input space).

- `shapley`: the enumeration of coalitions and the Shapley weights, for any function of a few inputs;
- `explainer`: one stored model version explained against its own reference sample;
- `chart`: the contributions drawn as SVG bar charts (one prediction; reference against a window).

Nothing is imported here: `chart` stays free of the model store (and BentoML's import) for the drift report.
"""
