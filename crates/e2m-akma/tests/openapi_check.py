#!/usr/bin/env python3
"""Validates JSON bodies against the vendored 3GPP OpenAPI files with openapi-core (PyPI),
a validator written by nobody here. Run by tests/openapi.rs.

Input (stdin): a JSON array of cases, each
    {"name": str, "spec": "TS29535_Naanf_AKMA.yaml" | "TS29522_AKMA.yaml",
     "method": "post", "path": "/naanf-akma/v1/...",
     "request": <JSON value> | null,            # the request body (null: none)
     "status": int | null, "response": <JSON value> | null,
     "response_content_type": str | null,       # default application/json
     "callback": bool}                          # request is a callback's body: validated
                                                # against the schema of the callback
Output: one line per case, "ok <name>" or "FAIL <name>: <reason>"; exit 1 if any failed,
exit 3 if openapi-core is missing (the caller says what to install).
"""
import json
import sys
from pathlib import Path

try:
    from openapi_core import Config, OpenAPI
    from openapi_core.testing import MockRequest, MockResponse
    from openapi_core.validation.schemas import oas30_write_schema_validators_factory
except ImportError as err:  # pragma: no cover
    print(f"missing: {err}", file=sys.stderr)
    sys.exit(3)

HERE = Path(__file__).resolve().parent.parent / "openapi"
HOST = "https://example.com"


def load(spec):
    # The whole-document check is off: it would follow every $ref of TS29571_CommonData.yaml
    # into files that are not vendored (TS29510, TS29514, ...). Each body is still validated
    # against its schema, and a $ref is resolved when a body reaches it (ours never reach
    # the unvendored ones: a body that did would fail here as unresolvable, not pass).
    # ProblemDetails travel as application/problem+json (TS 29.500 5.2.7.1), which
    # openapi-core does not decode by itself.
    config = Config(
        spec_validator_cls=None,
        extra_media_type_deserializers={"application/problem+json": json.loads},
    )
    return OpenAPI.from_file_path(str(HERE / spec), config=config)


def callback_schema(api_spec, path, method):
    """The request body schema of the ServiceDisablementNotification callback of an operation."""
    op = api_spec / "paths" / path.split("/v1", 1)[1] / method
    # The callback's key, "{$request.body#/notifUri}", holds a '/', which SchemaPath's '/'
    # operator would split: take the callback's only expression by iteration.
    (_, expression), = (op / "callbacks" / "ServiceDisablementNotification").items()
    content = expression / "post" / "requestBody" / "content"
    (_, media), = ((k, v) for k, v in content.items() if k == "application/json")
    return media / "schema"


def main():
    cases = json.load(sys.stdin)
    apis = {}
    failed = 0
    for case in cases:
        name = case["name"]
        try:
            api = apis.setdefault(case["spec"], load(case["spec"]))
            if case.get("callback"):
                schema = callback_schema(api.spec, case["path"], case["method"])
                validator = oas30_write_schema_validators_factory.create(api.spec, schema)
                validator.validate(case["request"])
            else:
                body = None if case["request"] is None else json.dumps(case["request"]).encode()
                req = MockRequest(HOST, case["method"], case["path"], data=body,
                                  content_type="application/json")
                if case["status"] is None:
                    api.validate_request(req)
                else:
                    data = b"" if case["response"] is None else json.dumps(case["response"]).encode()
                    ctype = case.get("response_content_type") or "application/json"
                    resp = MockResponse(data=data, status_code=case["status"], content_type=ctype)
                    api.validate_response(req, resp)
            print(f"ok {name}")
        except Exception as err:  # report every failure, with its reason
            failed += 1
            detail = getattr(err, "__cause__", None) or err
            print(f"FAIL {name}: {type(err).__name__}: {err}; {detail}".replace("\n", " "))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
