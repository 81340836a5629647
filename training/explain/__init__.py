"""Why a model answered what it did: per-input contributions (exact Shapley values in the model's input space).

- `shapley`: the enumeration of coalitions and the Shapley weights, for any function of a few inputs;
- `explainer`: one stored model version explained against its own reference sample;
- `chart`: the contributions drawn as SVG bar charts (one prediction; reference against a window).
"""

from training.explain.explainer import (
    BACKGROUND_ROWS, OUTPUTS, Explainer, Explainers, Explanation, OutputSpace, model_output,
)

__all__ = ["BACKGROUND_ROWS", "OUTPUTS", "Explainer", "Explainers", "Explanation", "OutputSpace", "model_output"]
