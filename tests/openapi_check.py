"""Check that an answer matches the service's own OpenAPI document."""

from typing import Any

import jsonschema
from jsonschema.protocols import Validator


def check_answer(spec: dict[str, Any], method: str, path: str, status: int,
                 body: Any) -> None:
    """Raise if `body` is not what `spec` promises for (method, path template, status)."""
    responses = spec["paths"][path][method.lower()]["responses"]
    answer = responses.get(str(status), responses["default"])
    schema = {**answer["content"]["application/json"]["schema"],
              "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


def body_validator(spec: dict[str, Any], method: str, path: str) -> Validator:
    """A validator of the request body `spec` documents for (method, path template),
    formats included."""
    content = spec["paths"][path][method.lower()]["requestBody"]["content"]
    schema = {**content["application/json"]["schema"], "components": spec["components"]}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
