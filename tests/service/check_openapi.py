#!/usr/bin/python3
"""check_openapi.py OPENAPI_JSON DIR: real qsnapd replies against the OpenAPI document, with jsonschema.

DIR holds what a test recorded: for each reply N.meta ("METHOD PATH STATUS CONTENT-TYPE", PATH without the
query) and N.body. Every reply must match an operation of the document (path template and method), have its
status documented there, and - for JSON - validate against that response's schema (Draft 2020-12, which
OpenAPI 3.1 uses, $refs resolved in the document). Every schema of the document is checked as a schema first.
Exit 0 when all pass; prints each failure otherwise.
"""
import json
import os
import sys

import jsonschema


def template_match(template, path):
    t, p = template.strip("/").split("/"), path.strip("/").split("/")
    if len(t) != len(p):
        return False
    return all((a.startswith("{") and a.endswith("}") and b) or a == b for a, b in zip(t, p))


def find_operation(doc, method, path):
    # a literal segment beats a template one: /api/vms/{vm} must not take /api/vms/x/... by length alone
    hits = [t for t in doc["paths"] if template_match(t, path)]
    hits.sort(key=lambda t: t.count("{"))
    for t in hits:
        op = doc["paths"][t].get(method.lower())
        if op:
            return t, op
    return None, None


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    doc = json.load(open(sys.argv[1]))
    cls = jsonschema.Draft202012Validator
    for name, schema in doc["components"]["schemas"].items():
        cls.check_schema(schema)
    resolver = jsonschema.RefResolver.from_schema(doc)
    failures, checked, seen = [], 0, set()
    for meta in sorted(f for f in os.listdir(sys.argv[2]) if f.endswith(".meta")):
        base = os.path.join(sys.argv[2], meta[:-5])
        method, path, status, ctype = open(base + ".meta").read().split(" ", 3)
        ctype = ctype.strip().split(";")[0]
        body = open(base + ".body", "rb").read()
        where = f"{method} {path} -> {status}"
        template, op = find_operation(doc, method, path)
        if not op:
            failures.append(f"{where}: no such operation in the document")
            continue
        resp = op["responses"].get(status)
        if not resp:
            failures.append(f"{where}: status {status} is not documented for {method} {template}")
            continue
        content = resp.get("content", {})
        if ctype not in content:
            failures.append(f"{where}: content type {ctype} is not documented ({', '.join(content)})")
            continue
        if ctype != "application/json":
            checked += 1
            continue
        try:
            value = json.loads(body)
        except ValueError as e:
            failures.append(f"{where}: not JSON: {e}")
            continue
        schema = content[ctype]["schema"]
        errors = sorted(cls(schema, resolver=resolver).iter_errors(value), key=lambda e: list(e.path))
        for e in errors[:3]:
            failures.append(f"{where}: {'/'.join(map(str, e.path))}: {e.message}")
        checked += 1
        seen.add((method, template))
    for f in failures:
        print("FAIL", f)
    print(f"check_openapi: {checked} replies checked, {len(seen)} operations seen, {len(failures)} failures")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
