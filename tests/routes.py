"""Every route the service answers and the token scope it must have: written here, not read from the declarations,
so a door declared with the wrong scope fails, and a new route fails until it is listed. Shared by the in-process
matrix (tests/fast/test_policy.py) and the real-server one (tests/test_lifecycle.py)."""

from __future__ import annotations

from serving.web.policy import Scope

EXPECTED = {
    "/predict": Scope.PREDICT, "/batch_predict": Scope.PREDICT, "/v1/predict": Scope.PREDICT,
    "/v2/models/{name}/infer": Scope.PREDICT, "/v2/models/{name}/versions/{version}/infer": Scope.PREDICT,
    "/v1/explain": Scope.PREDICT, "/v1/predictions/{prediction_id}/explanation": Scope.PREDICT,
    "/v1/feedback": Scope.FEEDBACK,
    "/v1/admin/reload": Scope.ADMIN, "/v1/admin/models/{name}/load": Scope.ADMIN,
    "/v1/admin/models/{name}/unload": Scope.ADMIN, "/v1/admin/history": Scope.ADMIN,
    "/v1/models": Scope.PUBLIC, "/v1/rollouts": Scope.PUBLIC, "/v1/rollouts/{task}/gate": Scope.PUBLIC, "/v2": Scope.PUBLIC, "/v2/health/live": Scope.PUBLIC, "/v2/health/ready": Scope.PUBLIC,
    "/v2/models/{name}": Scope.PUBLIC, "/v2/models/{name}/versions/{version}": Scope.PUBLIC,
    "/v2/models/{name}/ready": Scope.PUBLIC, "/v2/models/{name}/versions/{version}/ready": Scope.PUBLIC,
    "/v2/models/{name}/config": Scope.PUBLIC, "/v2/models/{name}/versions/{version}/config": Scope.PUBLIC,
    "/v2/{path:path}": Scope.PUBLIC,  # the protocol's JSON 404/405 for what no V2 route takes
    "/livez": Scope.PUBLIC, "/healthz": Scope.PUBLIC, "/readyz": Scope.PUBLIC, "/metrics": Scope.PUBLIC,
    "/": Scope.PUBLIC, "/docs.json": Scope.PUBLIC, "/schema.json": Scope.PUBLIC, "/static_content/{path:path}": Scope.PUBLIC,
}

# Routes the service answers but leaves out of /docs.json: the protocol's model configuration (not served: a JSON 404)
# and the catch-all that gives /v2 JSON 404/405 answers.
UNDOCUMENTED = {
    ("/v2/models/{name}/config", "GET"), ("/v2/models/{name}/versions/{version}/config", "GET"),
    ("/v2/{path:path}", "GET"), ("/v2/{path:path}", "POST"),
}


def concrete(path: str, version: str) -> str:
    """A path to call for a route: the admin routes name a model that does not exist (nothing is loaded or
    unloaded), the others the served purchase_gbm; a prediction id that no log holds."""
    model = "matrix_no_such_model" if "/admin/" in path else "purchase_gbm"
    return (path.replace("{task}", "purchase").replace("{name}", model).replace("{version}", version).replace("{path:path}", "favicon.ico")
            .replace("{prediction_id}", "01a00000-0000-7000-8000-000000000000"))


def variants(path: str) -> tuple[str, str]:
    """The path and the same with a trailing slash: one route."""
    return path, path.rstrip("/") + "/"
